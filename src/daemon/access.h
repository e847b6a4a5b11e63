/*
 * access.h - the daemon's access-control glue (internal to src/daemon): the
 * auth module (tokens, policy, Unix-socket allow-lists) hooked into the rpc
 * server's guard and VmService's per-VM checks, with the denials and the
 * audit trail logged.
 */
#ifndef CHCP_DAEMON_ACCESS_H
#define CHCP_DAEMON_ACCESS_H

#include "api/api.h"
#include "daemon/daemon.h"
#include "rpc/rpc.h"

typedef struct access_ctl access_ctl;

/* Read the token and policy files, install the guard on `rpc` and fill
 * `out` for api_register. NULL with an error naming the file. */
access_ctl *access_start(const chcp_config *cfg, rpc_server *rpc, api_access *out,
                         chcp_error **err);
/* SIGHUP: re-read both files; on error the old ones stay. */
int access_reload(access_ctl *a, chcp_error **err);
/* Endpoints beside the API that say more than "alive" (/metrics, /_/health)
 * need what the API needs: false with unauthenticated / permission_denied. */
bool access_http_allowed(access_ctl *a, const http_request *req, chcp_error **err);
/* One line for the start-up log: "mutual TLS, 3 tokens, policy (5 rules)". */
void access_describe(const access_ctl *a, char *buf, size_t size);
void access_free(access_ctl *a);

#endif
