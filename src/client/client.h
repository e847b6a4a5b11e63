/*
 * client.h - chcp's client library: calls cloudhypervisor.v1.VmService over
 * the Connect protocol and follows VMs as they change. chcpctl (src/cli/) is
 * a thin command over it; any C program can link it from libchcp.a.
 *
 * Wire: Connect unary calls, binary protobuf (protobuf-c), HTTP/1.1 (parsed
 * with http-parser) over a Unix socket, TCP, or TLS over TCP (OpenSSL). I/O is
 * blocking with a deadline per call: a command-line tool makes one call at a
 * time and must never hang. Errors come back as chcp_error objects carrying
 * the server's Connect code, or the code a Connect client infers for a
 * transport failure (unavailable, deadline_exceeded, ...).
 *
 * Streams are layered so that TLS is just another stream under the HTTP
 * code (client_internal.h): the HTTP and Connect layers do not know whether
 * bytes travel in clear text.
 */
#ifndef CHCP_CLIENT_H
#define CHCP_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "cloudhypervisor/v1/vm.pb-c.h"
#include "core/core.h"

/* ---- endpoints ------------------------------------------------------------ */

typedef enum client_scheme {
    CLIENT_SCHEME_UNIX,  /* unix:///path, unix:/path or an absolute path */
    CLIENT_SCHEME_HTTP,  /* http://host[:port][/prefix] or host:port */
    CLIENT_SCHEME_HTTPS, /* https://host[:port][/prefix] */
} client_scheme;

typedef struct client_endpoint {
    client_scheme scheme;
    char *path;      /* UNIX: the socket path */
    char *host;      /* HTTP(S): name or address literal, without brackets */
    char *port;      /* HTTP(S): decimal port */
    char *prefix;    /* HTTP(S): routing prefix without trailing '/' ("" when none) */
    char *authority; /* the Host header: "host:port", or "localhost" for UNIX */
    char *display;   /* canonical text for messages: "unix:///run/chcp.sock" */
} client_endpoint;

/* Default when neither --endpoint nor CHCPCTL_ENDPOINT is given: the
 * daemon's default listener. */
#define CLIENT_DEFAULT_ENDPOINT "http://localhost:8080"

/* Parse an endpoint; errors are CHCP_INVALID_ARGUMENT naming what is wrong. */
int client_endpoint_parse(const char *text, client_endpoint *ep, chcp_error **err);
void client_endpoint_free(client_endpoint *ep);

/* ---- clients ------------------------------------------------------------- */

typedef struct client_tls_options {
    const char *ca_file;     /* trust these CAs instead of the system store */
    const char *cert_file;   /* client certificate (PEM) for mutual TLS */
    const char *key_file;    /* its key (PEM); defaults to cert_file */
    const char *server_name; /* name to verify instead of the endpoint's host */
} client_tls_options;

typedef struct client_options {
    const char *endpoint;     /* NULL: CLIENT_DEFAULT_ENDPOINT */
    client_tls_options tls;   /* used only for https:// endpoints */
    uint64_t call_timeout_ms; /* whole call incl. connecting; 0: none */
    const char *user_agent;   /* NULL: "chcp-client/<version>" */
    /* When set and it becomes non-zero (from a signal handler), calls and
     * waits in progress stop with CHCP_CANCELED. */
    volatile sig_atomic_t *cancel;
} client_options;

typedef struct chcp_client chcp_client;

/* Parses the endpoint and prepares TLS; connects lazily on the first call. */
chcp_client *client_new(const client_options *opts, chcp_error **err);
void client_free(chcp_client *c);
const client_endpoint *client_get_endpoint(const chcp_client *c);

/*
 * One unary call of cloudhypervisor.v1.VmService/<method>. On success
 * *resp is a message of resp_desc (free it with
 * protobuf_c_message_free_unpacked(*resp, NULL)). A read-only call
 * (GetVmInfo, ListVms) is retried once on a fresh connection when a kept-alive
 * one turns out to have been closed by the server; mutations are sent on a
 * fresh connection and never retried, so they are never applied twice.
 */
int client_call(chcp_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                chcp_error **err);

/* The code a Connect client infers from an HTTP status without a usable
 * error body (protocol.md: 400 internal, 404 unimplemented, 503 unavailable...). */
chcp_code client_code_for_http_status(int status);

/* ---- following VMs -------------------------------------------------------- */

/*
 * A watch reports VMs appearing, changing (state, reason, VMM process or any
 * update) and disappearing. Today it polls (GetVmInfo for named VMs, ListVms
 * otherwise) and reports the differences; the interval starts at
 * min_interval_ms, doubles while nothing changes, up to max_interval_ms, and
 * drops back after a change. When the server gains a WatchVmEvents stream,
 * client_watch_next keeps its contract and reads the stream instead, so
 * `chcpctl wait` and `chcpctl watch` do not change.
 */
typedef enum client_event_kind {
    CLIENT_EVENT_ADDED = 1, /* first seen (the first poll reports every VM) */
    CLIENT_EVENT_CHANGED,
    CLIENT_EVENT_DELETED,
} client_event_kind;

typedef struct client_event {
    client_event_kind kind;
    /* The VM as now seen; for DELETED, as last seen. Owned by the event. */
    Cloudhypervisor__V1__VmInfo *vm;
} client_event;

typedef struct client_watch_options {
    const char *const *vm_ids; /* only these VMs; none: every VM */
    size_t n_vm_ids;
    const char *const *label_keys; /* ListVms label filter (all VMs mode) */
    const char *const *label_values;
    size_t n_labels;
    uint64_t min_interval_ms; /* 0: 50 ms */
    uint64_t max_interval_ms; /* 0: 1000 ms */
} client_watch_options;

typedef struct client_watch client_watch;

client_watch *client_watch_new(chcp_client *c, const client_watch_options *opts);
void client_watch_free(client_watch *w);

/*
 * Wait for the next event until deadline_ns (time_mono_ns() clock; 0: no
 * deadline). Returns 1 and fills *ev (release with client_event_clear), 0 when
 * the deadline passed, -1 on error (CHCP_CANCELED when the client's cancel
 * flag was raised).
 */
int client_watch_next(client_watch *w, uint64_t deadline_ns, client_event *ev, chcp_error **err);
void client_event_clear(client_event *ev);

#endif
