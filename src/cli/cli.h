/*
 * cli.h - chcpctl, the command-line tool for humans over VmService, and the
 * interface between its files:
 *
 *   main.c        entry point: global options, dispatch, signals
 *   commands.c    THE command table: names, options, help text. --help, the
 *                 shell completion scripts and the man page are generated from
 *                 it, so none of them can drift from what the parser accepts
 *   options.c     argv -> cli_ctx (getopt_long built from the table), help
 *   cmd_vm.c      get, list and the lifecycle commands
 *   cmd_create.c  create (file and flags)
 *   spec.c        a VM spec document (YAML or JSON) checked against the
 *                 protobuf schema and turned into a CreateVmRequest
 *   yaml.c        YAML -> JSON tree (libyaml)
 *   cmd_wait.c    wait and watch
 *   render.c      tables, details, JSON output, terminal-safe text
 *   units.c       durations, sizes, states, times
 *   status.c      exit codes per error class, error printing
 *   gen_man.c     the man page; gen_completion.c: bash and zsh completion
 *
 * All network work goes through the client library (client/client.h).
 */
#ifndef CHCP_CLI_H
#define CHCP_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "client/client.h"

/* ---- the command table ------------------------------------------------------ */

typedef enum cli_complete {
    CLI_COMPLETE_NONE,
    CLI_COMPLETE_VM,     /* VM ids, asked from the server */
    CLI_COMPLETE_STATE,  /* VM state names */
    CLI_COMPLETE_FILE,   /* file names */
    CLI_COMPLETE_OUTPUT, /* table, json */
    CLI_COMPLETE_SHELL,  /* bash, zsh */
    CLI_COMPLETE_COMMAND,
} cli_complete;

enum { CLI_OPT_REPEAT = 1u };

typedef struct cli_option {
    const char *name; /* long name without "--" */
    char short_name;  /* 0: none */
    const char *arg;  /* value's name in help ("FILE"); NULL: a switch */
    unsigned flags;
    cli_complete complete;
    const char *help;
} cli_option;

typedef struct cli_ctx cli_ctx;

#define CLI_MANY 0xffffu

typedef struct cli_command {
    const char *name;
    const char *alias; /* or NULL */
    const char *usage; /* positional arguments: "VM...", "[VM]" */
    unsigned min_args, max_args;
    cli_complete arg_complete;
    const char *summary;       /* one line, lower case, no period */
    const char *description;   /* paragraphs separated by "\n\n" */
    const cli_option *options; /* ends with an entry whose name is NULL */
    int (*run)(cli_ctx *ctx);
    bool hidden; /* internal (man page generator) */
} cli_command;

extern const cli_command cli_commands[];
extern const size_t cli_n_commands;
extern const cli_option cli_global_options[];
extern const char cli_program_description[];
extern const char cli_environment_help[];

const cli_command *cli_find_command(const char *name);

/* ---- a parsed command line ------------------------------------------------------ */

typedef struct cli_values {
    char **v;
    size_t n;
} cli_values;

typedef enum cli_output { CLI_OUTPUT_TABLE, CLI_OUTPUT_JSON } cli_output;

struct cli_ctx {
    const cli_command *cmd;
    char **args;
    size_t n_args;
    cli_values *values;     /* parallel to cmd->options */
    cli_values globals[16]; /* parallel to cli_global_options */
    cli_output output;
    uint64_t request_timeout_ms;
    chcp_client *client; /* opened on first use by cli_client() */
    int exit_code;       /* of the first failure */
    FILE *out;
    volatile sig_atomic_t *cancel;
};

/* Parse argv into ctx. Returns 0, or an exit code (usage error printed,
 * or --help/--version answered: then *done is true). */
int cli_parse(int argc, char **argv, cli_ctx *ctx, bool *done);
void cli_ctx_free(cli_ctx *ctx);

/* The last value of an option of the command (NULL: not given), all values,
 * or whether a switch was given. */
const char *cli_opt(const cli_ctx *ctx, const char *name);
const cli_values *cli_opt_all(const cli_ctx *ctx, const char *name);
bool cli_flag(const cli_ctx *ctx, const char *name);
const char *cli_global(const cli_ctx *ctx, const char *name);

void cli_print_help(FILE *f, const cli_command *cmd); /* NULL: the program */
/* A usage error: message, hint, exit code 2. */
int cli_usage_error(const cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The client, connected lazily; NULL after printing the error. */
chcp_client *cli_client(cli_ctx *ctx);
/* The exit status so far, never 0 (for paths that failed). */
static inline int cli_failed(const cli_ctx *ctx)
{
    return ctx->exit_code ? ctx->exit_code : 1;
}

/* ---- commands ------------------------------------------------------------------ */

int cmd_create(cli_ctx *ctx);
/* get, boot, pause, resume, reboot, delete: one call per VM named. */
int cmd_vm_call(cli_ctx *ctx);
int cmd_shutdown(cli_ctx *ctx);
int cmd_list(cli_ctx *ctx);
int cmd_wait(cli_ctx *ctx);
int cmd_watch(cli_ctx *ctx);
int cmd_completion(cli_ctx *ctx);
int cmd_help(cli_ctx *ctx);
int cmd_version(cli_ctx *ctx);
int cmd_man(cli_ctx *ctx);

/* ---- exit codes and errors ---------------------------------------------------------- */

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,        /* internal, unknown, data_loss, anything unlisted */
    CLI_EXIT_USAGE = 2,          /* bad command line or unreadable/invalid local input */
    CLI_EXIT_NOT_FOUND = 3,      /* not_found */
    CLI_EXIT_STATE = 4,          /* failed_precondition, aborted, out_of_range */
    CLI_EXIT_UNAVAILABLE = 5,    /* unavailable: no connection, TLS failure, server away */
    CLI_EXIT_TIMEOUT = 6,        /* deadline_exceeded, including wait --timeout */
    CLI_EXIT_INVALID = 7,        /* invalid_argument from the server */
    CLI_EXIT_EXISTS = 8,         /* already_exists */
    CLI_EXIT_DENIED = 9,         /* permission_denied, unauthenticated */
    CLI_EXIT_EXHAUSTED = 10,     /* resource_exhausted */
    CLI_EXIT_UNIMPLEMENTED = 11, /* unimplemented: the server lacks the call */
    CLI_EXIT_INTERRUPTED = 130,  /* canceled by SIGINT/SIGTERM (watch ends with 0) */
};

typedef struct cli_exit_row {
    int exit_code;
    const char *meaning;
} cli_exit_row;

extern const cli_exit_row cli_exit_table[];
extern const size_t cli_exit_table_len;

int cli_exit_for_code(chcp_code code);
/* Print an error (text or, with -o json, {"code","message"} on stderr),
 * remember the first failure's exit code, return that error's exit code. */
int cli_report(cli_ctx *ctx, const chcp_error *e, const char *vm_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same for a problem with local input (a file, a flag's value): exit 2. */
int cli_report_input(cli_ctx *ctx, const chcp_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- output ------------------------------------------------------------------------ */

typedef Cloudhypervisor__V1__VmInfo VmInfo;

/* One protojson document on one line of stdout. */
int render_json(cli_ctx *ctx, const ProtobufCMessage *msg);
void render_vm_table(cli_ctx *ctx, VmInfo *const *vms, size_t n, bool headers);
void render_vm_details(cli_ctx *ctx, const VmInfo *vm);
/* Append s with control characters (terminal escapes) shown as '?'. */
void render_safe(chcp_buf *out, const char *s);
/* A JSON string of s; bytes that are not UTF-8 become '?'. */
json_t *render_json_string(const char *s);

/* ---- units ---------------------------------------------------------------------------- */

/* "90s", "1m30s", "500ms", "2h", "1.5s"; a bare number is seconds. */
int units_parse_duration(const char *text, uint64_t *ms, chcp_error **err);
/* "512M", "1G", "1GiB", "4096" (bytes); K/M/G/T are powers of 1024. */
int units_parse_size(const char *text, uint64_t *bytes, chcp_error **err);
void units_format_size(chcp_buf *out, uint64_t bytes);
void units_format_age(chcp_buf *out, const Google__Protobuf__Timestamp *ts);
void units_format_time(chcp_buf *out, const Google__Protobuf__Timestamp *ts);
/* "KEY=VALUE" -> key and value (pointing into a copy in *owned). */
int units_split_label(const char *text, char **owned, const char **key, const char **value,
                      chcp_error **err);
/* "running" for VM_STATE_RUNNING. */
const char *units_state_name(Cloudhypervisor__V1__VmState state);
/* Accepts "running", "RUNNING", "VM_STATE_RUNNING", "shutting-down". */
int units_parse_state(const char *text, Cloudhypervisor__V1__VmState *state);
/* An enum value by full or short name, any case, '-' for '_'; -1 if none. */
int units_enum_parse(const ProtobufCEnumDescriptor *d, const char *text, int *value);
/* Short name of an enum value: DISK_IMAGE_TYPE_RAW -> "raw". */
const char *units_enum_short(const ProtobufCEnumDescriptor *d, int value, char *buf, size_t len);

/* ---- VM specs (create) ---------------------------------------------------------------- */

/* Parse a YAML document into a JSON tree: mappings, sequences, and scalars
 * as strings (null for ~/null/empty plain scalars). */
json_t *yaml_to_json(const char *text, size_t len, const char *name, chcp_error **err);

/* Read a spec file ("-": stdin): JSON (by a .json name or a leading '{')
 * or YAML. */
json_t *spec_load_file(const char *path, chcp_error **err);
/* Check a tree against the message's schema (unknown fields, wrong types,
 * unknown enum names are errors naming the field path), coerce YAML's string
 * scalars, accept short enum names and size units: canonical proto3 JSON
 * (json names). spec_decode also turns that into the message. */
json_t *spec_normalize(json_t *doc, const ProtobufCMessageDescriptor *desc, chcp_error **err);
ProtobufCMessage *spec_decode(json_t *doc, const ProtobufCMessageDescriptor *desc,
                              chcp_error **err);

/* ---- generators ------------------------------------------------------------------------ */

void gen_man(FILE *f);
int gen_completion(FILE *f, const char *shell);

#endif
