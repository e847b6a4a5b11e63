/*
 * options.c - from argv to a cli_ctx, and the --help text, both driven by the
 * command table (commands.c).
 *
 * Global options may come before or after the command (`chcpctl -o json list`
 * and `chcpctl list -o json` are the same); command options and positional
 * arguments may be mixed (getopt_long permutes). A non-repeatable option given
 * twice is a usage error rather than a silent "last one wins".
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <string.h>

#define HELP_WIDTH 80
#define HELP_INDENT 26

static size_t count_options(const cli_option *o)
{
    size_t n = 0;
    while (o && o[n].name)
        n++;
    return n;
}

/* ---- help ------------------------------------------------------------------------ */

/* Print text filled to HELP_WIDTH, continuation lines indented by `indent`,
 * starting at column `col`. Verbatim paragraphs ("  ...") keep their lines. */
static void print_wrapped(FILE *f, const char *text, int indent, int col)
{
    const char *p = text;
    while (*p) {
        if (p[0] == ' ' && p[1] == ' ' && (p == text || p[-1] == '\n')) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            fprintf(f, "%*s%.*s\n", col ? 0 : indent, "", (int)len, p);
            col = 0;
            p += len + (nl ? 1 : 0);
            continue;
        }
        if (*p == '\n') {
            fputc('\n', f);
            col = 0;
            p++;
            continue;
        }
        size_t word = strcspn(p, " \n");
        if (col > indent && col + 1 + (int)word > HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col == 0) {
            fprintf(f, "%*s", indent, "");
            col = indent;
        } else if (col > indent || (col == indent && p != text && p[-1] == ' ')) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)word, p);
        col += (int)word;
        p += word;
        while (*p == ' ')
            p++;
    }
    if (col)
        fputc('\n', f);
}

static void print_options(FILE *f, const cli_option *opts)
{
    for (const cli_option *o = opts; o && o->name; o++) {
        char head[96];
        int n = snprintf(head, sizeof(head), "  %c%c%s--%s%s%s", o->short_name ? '-' : ' ',
                         o->short_name ? o->short_name : ' ', o->short_name ? ", " : "  ", o->name,
                         o->arg ? " " : "", o->arg ? o->arg : "");
        fputs(head, f);
        if (n >= HELP_INDENT - 1) {
            fputc('\n', f);
            n = 0;
        }
        fprintf(f, "%*s", HELP_INDENT - n, "");
        print_wrapped(f, o->help, HELP_INDENT, HELP_INDENT);
    }
}

void cli_print_help(FILE *f, const cli_command *cmd)
{
    if (!cmd) {
        fprintf(f, "Usage: chcpctl [OPTIONS] COMMAND [ARGS]\n\n");
        const char *end = strstr(cli_program_description, "\n\n");
        int len = end ? (int)(end - cli_program_description) : (int)strlen(cli_program_description);
        char *first = xstrndup(cli_program_description, (size_t)len);
        print_wrapped(f, first, 0, 0);
        free(first);
        fprintf(f, "\nCommands:\n");
        for (size_t i = 0; i < cli_n_commands; i++) {
            const cli_command *c = &cli_commands[i];
            if (c->hidden)
                continue;
            fprintf(f, "  %-12s %s\n", c->name, c->summary);
        }
        fprintf(f, "\nGlobal options:\n");
        print_options(f, cli_global_options);
        fprintf(f, "\nRun 'chcpctl COMMAND --help' for a command; 'man chcpctl' for exit "
                   "statuses and more.\n");
        return;
    }
    fprintf(f, "Usage: chcpctl %s%s%s%s\n", cmd->name, *cmd->usage ? " " : "", cmd->usage,
            count_options(cmd->options) ? " [OPTIONS]" : "");
    if (cmd->alias)
        fprintf(f, "       chcpctl %s ...\n", cmd->alias);
    fprintf(f, "\n");
    print_wrapped(f, cmd->description, 0, 0);
    if (count_options(cmd->options)) {
        fprintf(f, "\nOptions:\n");
        print_options(f, cmd->options);
    }
    fputc('\n', f);
    print_wrapped(f,
                  "Global options (chcpctl --help): -e/--endpoint, -o/--output, "
                  "--request-timeout, --cacert, --cert, --key, --tls-server-name.",
                  0, 0);
}

/* ---- parsing --------------------------------------------------------------------- */

int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("chcpctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (ctx && ctx->cmd)
        fprintf(stderr, "\nTry 'chcpctl %s --help'.\n", ctx->cmd->name);
    else
        fprintf(stderr, "\nTry 'chcpctl --help'.\n");
    return CLI_EXIT_USAGE;
}

static void values_add(cli_values *v, const char *value)
{
    v->v = xrealloc(v->v, (v->n + 1) * sizeof(char *));
    v->v[v->n++] = xstrdup(value ? value : "");
}

static void values_free(cli_values *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

enum { GLOBAL_BASE = 1000, COMMAND_BASE = 2000 };

/* getopt_long tables for the globals plus (when cmd is set) the command's. */
static void build_getopt(const cli_command *cmd, struct option *longs, chcp_buf *shorts)
{
    size_t k = 0;
    buf_append_str(shorts, cmd ? ":" : "+:");
    for (int pass = 0; pass < (cmd ? 2 : 1); pass++) {
        const cli_option *opts = pass == 0 ? cli_global_options : cmd->options;
        for (size_t i = 0; opts && opts[i].name; i++) {
            longs[k++] =
                (struct option){opts[i].name, opts[i].arg ? required_argument : no_argument, NULL,
                                (pass ? COMMAND_BASE : GLOBAL_BASE) + (int)i};
            if (opts[i].short_name) {
                buf_append_byte(shorts, (uint8_t)opts[i].short_name);
                if (opts[i].arg)
                    buf_append_byte(shorts, ':');
            }
        }
    }
    longs[k] = (struct option){0};
    buf_append_byte(shorts, 0);
}

/* Map a getopt result to (table, index). */
static const cli_option *resolve(const cli_command *cmd, int c, cli_values **slot, cli_ctx *ctx)
{
    if (c >= COMMAND_BASE) {
        if (!cmd)
            return NULL;
        *slot = &ctx->values[c - COMMAND_BASE];
        return &cmd->options[c - COMMAND_BASE];
    }
    if (c >= GLOBAL_BASE) {
        size_t i = (size_t)(c - GLOBAL_BASE);
        if (i >= ARRAY_SIZE(ctx->globals))
            return NULL;
        *slot = &ctx->globals[i];
        return &cli_global_options[i];
    }
    for (size_t i = 0; cli_global_options[i].name; i++)
        if (cli_global_options[i].short_name == c) {
            *slot = &ctx->globals[i];
            return &cli_global_options[i];
        }
    for (size_t i = 0; cmd && cmd->options[i].name; i++)
        if (cmd->options[i].short_name == c) {
            *slot = &ctx->values[i];
            return &cmd->options[i];
        }
    return NULL;
}

/* One getopt_long run over argv; stops at the command when cmd is NULL. */
static int run_getopt(int argc, char **argv, const cli_command *cmd, cli_ctx *ctx)
{
    size_t n = count_options(cli_global_options) + (cmd ? count_options(cmd->options) : 0);
    struct option *longs = xcalloc(n + 1, sizeof(*longs));
    chcp_buf shorts = CHCP_BUF_INIT;
    build_getopt(cmd, longs, &shorts);
    optind = 0; /* glibc: full reinitialisation */
    opterr = 0;
    int rc = 0;
    int c;
    while (rc == 0 && (c = getopt_long(argc, argv, (char *)shorts.data, longs, NULL)) != -1) {
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            if (c == ':')
                rc = cli_usage_error(ctx, "option %s needs a value", bad);
            else if (optopt)
                rc = cli_usage_error(ctx, "unknown option -%c", optopt);
            else
                rc = cli_usage_error(ctx, "unknown option %s", bad);
            break;
        }
        cli_values *slot = NULL;
        const cli_option *o = resolve(cmd, c, &slot, ctx);
        if (!o) {
            rc = cli_usage_error(ctx, "unknown option");
            break;
        }
        if (slot->n && !(o->flags & CLI_OPT_REPEAT))
            rc = cli_usage_error(ctx, "option --%s given more than once", o->name);
        else
            values_add(slot, optarg);
    }
    free(longs);
    buf_free(&shorts);
    return rc;
}

static int check_globals(cli_ctx *ctx)
{
    const char *output = cli_global(ctx, "output");
    if (!output || strcmp(output, "table") == 0)
        ctx->output = CLI_OUTPUT_TABLE;
    else if (strcmp(output, "json") == 0)
        ctx->output = CLI_OUTPUT_JSON;
    else
        return cli_usage_error(ctx, "--output: unknown format '%s' (table or json)", output);
    const char *timeout = cli_global(ctx, "request-timeout");
    ctx->request_timeout_ms = 120000;
    chcp_error *err = NULL;
    if (timeout && units_parse_duration(timeout, &ctx->request_timeout_ms, &err) < 0) {
        int rc = cli_usage_error(ctx, "--request-timeout: %s", err->message);
        error_free(err);
        return rc;
    }
    return 0;
}

int cli_parse(int argc, char **argv, cli_ctx *ctx, bool *done)
{
    *done = false;
    ctx->out = stdout;
    /* Pass 1: global options up to the command word. */
    char **copy = xcalloc((size_t)argc + 1, sizeof(char *));
    memcpy(copy, argv, (size_t)argc * sizeof(char *));
    int rc = run_getopt(argc, copy, NULL, ctx);
    int cmd_at = optind;
    free(copy);
    if (rc)
        return rc;
    if (cmd_at >= argc) {
        *done = true;
        if (cli_global(ctx, "version"))
            return cmd_version(ctx);
        if (cli_global(ctx, "help")) {
            cli_print_help(stdout, NULL);
            return 0;
        }
        cli_print_help(stderr, NULL);
        return CLI_EXIT_USAGE;
    }
    ctx->cmd = cli_find_command(argv[cmd_at]);
    if (!ctx->cmd)
        return cli_usage_error(ctx, "unknown command '%s'", argv[cmd_at]);
    size_t n_opts = count_options(ctx->cmd->options);
    ctx->values = xcalloc(n_opts + 1, sizeof(cli_values));
    for (size_t i = 0; i < ARRAY_SIZE(ctx->globals); i++)
        values_free(&ctx->globals[i]);

    /* Pass 2: everything after the program name, command word included, with
     * the globals and the command's options. */
    int sub_argc = argc - cmd_at;
    char **sub = xcalloc((size_t)sub_argc + 1, sizeof(char *));
    for (int i = 0; i < sub_argc; i++)
        sub[i] = argv[cmd_at + i];
    /* Globals given before the command count too: parse them first. */
    int pre_argc = cmd_at;
    char **pre = xcalloc((size_t)pre_argc + 1, sizeof(char *));
    memcpy(pre, argv, (size_t)pre_argc * sizeof(char *));
    rc = run_getopt(pre_argc, pre, ctx->cmd, ctx);
    free(pre);
    if (rc == 0)
        rc = run_getopt(sub_argc, sub, ctx->cmd, ctx);
    int first_arg = optind;
    if (rc == 0) {
        ctx->n_args = (size_t)(sub_argc - first_arg);
        ctx->args = xcalloc(ctx->n_args + 1, sizeof(char *));
        for (size_t i = 0; i < ctx->n_args; i++)
            ctx->args[i] = xstrdup(sub[first_arg + (int)i]);
    }
    free(sub);
    if (rc)
        return rc;
    if (cli_global(ctx, "help")) {
        *done = true;
        cli_print_help(stdout, ctx->cmd);
        return 0;
    }
    if (cli_global(ctx, "version")) {
        *done = true;
        return cmd_version(ctx);
    }
    if (ctx->n_args < ctx->cmd->min_args)
        return cli_usage_error(ctx, "%s: missing %s", ctx->cmd->name, ctx->cmd->usage);
    if (ctx->n_args > ctx->cmd->max_args)
        return cli_usage_error(ctx, "%s: unexpected argument '%s'", ctx->cmd->name,
                               ctx->args[ctx->cmd->max_args]);
    return check_globals(ctx);
}

void cli_ctx_free(cli_ctx *ctx)
{
    for (size_t i = 0; ctx->cmd && ctx->values && i < count_options(ctx->cmd->options); i++)
        values_free(&ctx->values[i]);
    free(ctx->values);
    for (size_t i = 0; i < ARRAY_SIZE(ctx->globals); i++)
        values_free(&ctx->globals[i]);
    for (size_t i = 0; i < ctx->n_args; i++)
        free(ctx->args[i]);
    free(ctx->args);
    client_free(ctx->client);
}

static const cli_values *find_values(const cli_option *opts, cli_values *values, const char *name)
{
    for (size_t i = 0; opts && opts[i].name; i++)
        if (strcmp(opts[i].name, name) == 0)
            return values[i].n ? &values[i] : NULL;
    return NULL;
}

const cli_values *cli_opt_all(const cli_ctx *ctx, const char *name)
{
    return find_values(ctx->cmd->options, ctx->values, name);
}

const char *cli_opt(const cli_ctx *ctx, const char *name)
{
    const cli_values *v = cli_opt_all(ctx, name);
    return v ? v->v[v->n - 1] : NULL;
}

bool cli_flag(const cli_ctx *ctx, const char *name)
{
    return cli_opt_all(ctx, name) != NULL;
}

const char *cli_global(const cli_ctx *ctx, const char *name)
{
    const cli_values *v = find_values(cli_global_options, (cli_values *)ctx->globals, name);
    return v ? v->v[v->n - 1] : NULL;
}
