/*
 * main.c - chcpctl's entry point: parse the command line, run the command,
 * exit with its status (status.c has the table). Kept thin: the commands are
 * in cmd_*.c, the protocol in the client library.
 *
 * SIGINT and SIGTERM raise a flag that every wait in the client library
 * checks, so an interrupted call or wait ends cleanly (and `watch` exits 0);
 * SIGPIPE is ignored so that a TLS peer hanging up is an error, not a death.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "cli/cli.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* A setting from its flag, else from the environment (empty = unset). */
static const char *setting(const cli_ctx *ctx, const char *flag, const char *env)
{
    const char *v = cli_global(ctx, flag);
    if (v)
        return v;
    v = getenv(env);
    return v && *v ? v : NULL;
}

chcp_client *cli_client(cli_ctx *ctx)
{
    if (ctx->client)
        return ctx->client;
    char ua[64];
    snprintf(ua, sizeof(ua), "chcpctl/%s", CHCP_VERSION);
    client_options opts = {
        .endpoint = setting(ctx, "endpoint", "CHCPCTL_ENDPOINT"),
        .tls =
            {
                .ca_file = setting(ctx, "cacert", "CHCPCTL_CACERT"),
                .cert_file = setting(ctx, "cert", "CHCPCTL_CERT"),
                .key_file = setting(ctx, "key", "CHCPCTL_KEY"),
                .server_name = cli_global(ctx, "tls-server-name"),
            },
        .call_timeout_ms = ctx->request_timeout_ms,
        .user_agent = ua,
        .cancel = ctx->cancel,
    };
    chcp_error *err = NULL;
    ctx->client = client_new(&opts, &err);
    if (!ctx->client) {
        cli_report_input(ctx, err, "%s", ctx->cmd->name);
        error_free(err);
    }
    return ctx->client;
}

int main(int argc, char **argv)
{
    install_signals();
    cli_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.cancel = &interrupted;
    bool done = false;
    int rc = cli_parse(argc, argv, &ctx, &done);
    if (rc == 0 && !done)
        rc = ctx.cmd->run(&ctx);
    if (fflush(stdout) != 0 && errno != EPIPE) {
        fprintf(stderr, "chcpctl: writing the output: %s\n", strerror(errno));
        if (rc == 0)
            rc = CLI_EXIT_FAILURE;
    }
    cli_ctx_free(&ctx);
    return rc;
}
