/*
 * cmd_meta.c - the commands about chcpctl itself: help, version, completion
 * and the hidden __man (the man page generator packagers and the tests use).
 */
#include "cli/cli.h"

int cmd_help(cli_ctx *ctx)
{
    if (ctx->n_args == 0) {
        cli_print_help(ctx->out, NULL);
        return 0;
    }
    const cli_command *cmd = cli_find_command(ctx->args[0]);
    if (!cmd)
        return cli_usage_error(ctx, "help: unknown command '%s'", ctx->args[0]);
    cli_print_help(ctx->out, cmd);
    return 0;
}

int cmd_version(cli_ctx *ctx)
{
    if (ctx->output == CLI_OUTPUT_JSON) {
        json_t *doc = json_pack("{s:s,s:s}", "version", CHCP_VERSION, "gitRevision", CHCP_GIT_REV);
        json_dumpf(doc, ctx->out, JSON_COMPACT);
        fputc('\n', ctx->out);
        json_decref(doc);
    } else {
        fprintf(ctx->out, "chcpctl %s (git %s)\n", CHCP_VERSION, CHCP_GIT_REV);
    }
    return 0;
}

int cmd_completion(cli_ctx *ctx)
{
    if (gen_completion(ctx->out, ctx->args[0]) < 0)
        return cli_usage_error(ctx, "completion: unknown shell '%s' (bash or zsh)", ctx->args[0]);
    return 0;
}

int cmd_man(cli_ctx *ctx)
{
    gen_man(ctx->out);
    return 0;
}
