/*
 * main.c - chcp-api's entry point: read and check the configuration, then
 * hand over to the daemon. Kept thin on purpose; everything testable lives in
 * src/daemon/.
 *
 * Whatever stops the start is said on stderr in one plain line (and logged),
 * because that is where a person starting the daemon, or `systemctl status`,
 * looks. Exit codes (docs/config.md): 0 clean shutdown (or --help/--version),
 * 1 start-up failure, 2 invalid configuration, 3 the durable state needs an
 * operator (nothing was touched), 128+signal when a second signal cuts
 * shutdown short.
 */
#include <stdio.h>

#include "core/core.h"
#include "daemon/daemon.h"

extern char **environ;

static void report_unknown(const char *name, const char *suggestion, void *ud)
{
    if (suggestion)
        log_console(LOG_WARN, "unknown variable %s is ignored (did you mean %s?)", name,
                    suggestion);
    else
        log_console(LOG_WARN, "unknown variable %s is ignored (chcp-api --help lists them)", name);
}

int main(int argc, char **argv)
{
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;

    log_init();
    if (config_load(&cfg, argc, argv, config_process_env, NULL, &action, &err) < 0) {
        log_console(LOG_ERROR, "invalid configuration: %s", err->message);
        error_free(err);
        config_free(&cfg);
        return CHCP_EXIT_CONFIG;
    }
    if (action == CONFIG_HELP) {
        config_usage(stdout, argv[0]);
        config_free(&cfg);
        return CHCP_EXIT_OK;
    }
    if (action == CONFIG_VERSION) {
        config_version(stdout);
        config_free(&cfg);
        return CHCP_EXIT_OK;
    }

    log_set_level(cfg.log_level);
    config_unknown_variables(environ, report_unknown, NULL);
    int rc = CHCP_EXIT_FAILURE;
    if (config_check_paths(&cfg, &err) == 0)
        rc = daemon_run(&cfg, &err);
    if (err) {
        /* Exit 3: the state needs an operator; the message says how. Exit 2
         * from here: a TLS or access file that does not load. */
        log_console(LOG_ERROR, "%s: %s",
                    rc == CHCP_EXIT_STATE    ? "refusing to start"
                    : rc == CHCP_EXIT_CONFIG ? "invalid configuration"
                                             : "cannot start",
                    err->message);
        error_free(err);
    }
    config_free(&cfg);
    return rc;
}
