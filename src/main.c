/*
 * main.c - chcp-api's entry point: read the configuration, then hand over to
 * the daemon. Kept thin on purpose; everything testable lives in src/daemon/.
 *
 * Exit codes: 0 clean shutdown (or --help/--version), 1 start-up failure,
 * 2 invalid configuration, 128+signal when a second signal cuts shutdown short.
 */
#include <stdio.h>

#include "core/core.h"
#include "daemon/daemon.h"

int main(int argc, char **argv)
{
    chcp_config cfg;
    config_action action;
    chcp_error *err = NULL;

    if (config_load(&cfg, argc, argv, config_process_env, NULL, &action, &err) < 0) {
        /* Plain text for the person at the terminal, JSON for log pipelines. */
        fprintf(stderr, "chcp-api: invalid configuration: %s\n", err->message);
        log_error("invalid configuration: %s", err->message);
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
    int rc = daemon_run(&cfg, &err);
    if (err) {
        log_error("chcp-api failed: %s", err->message);
        error_free(err);
    }
    config_free(&cfg);
    return rc;
}
