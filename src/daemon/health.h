/*
 * health.h - grpc.health.v1.Health on the API port (internal to
 * src/daemon): Check and Watch report the readiness /readyz reports, so a
 * Kubernetes gRPC probe, grpc_health_probe or any gRPC client sees the same
 * answer as an HTTP probe.
 */
#ifndef CHCP_DAEMON_HEALTH_H
#define CHCP_DAEMON_HEALTH_H

#include "daemon/observe.h"
#include "rpc/rpc.h"

typedef struct health_service health_service;

/* Register the service on `rpc`; readiness comes from `obs`, and `stopping`
 * (owned by the caller) turns every status NOT_SERVING. */
health_service *health_service_start(uv_loop_t *loop, rpc_server *rpc, observe *obs,
                                     const bool *stopping, chcp_error **err);
/* Shutting down: every Watch gets NOT_SERVING and ends; no more polling. */
void health_service_stop(health_service *h);
/* Free once the rpc server has no call left (after stop). */
void health_service_free(health_service *h);

#endif
