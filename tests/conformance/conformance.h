/*
 * conformance.h - what the conformance server's two files share: message
 * typedefs, the per-response arena and the RequestInfo builder (server.c),
 * and the streaming handlers (streams.c).
 */
#ifndef CHCP_CONFORMANCE_H
#define CHCP_CONFORMANCE_H

#include "connectrpc/conformance/v1/service.pb-c.h"
#include "rpc/protojson.h"
#include "rpc/rpc.h"
#include "transport/transport.h"

typedef Connectrpc__Conformance__V1__Header Header;
typedef Connectrpc__Conformance__V1__UnaryResponseDefinition ResponseDefinition;
typedef Connectrpc__Conformance__V1__StreamResponseDefinition StreamDefinition;
typedef Connectrpc__Conformance__V1__ConformancePayload Payload;
typedef Connectrpc__Conformance__V1__ConformancePayload__RequestInfo RequestInfo;
typedef Connectrpc__Conformance__V1__ConformancePayload__ConnectGetInfo ConnectGetInfo;

/* Everything allocated for one response, freed together after it is sent. */
typedef struct arena {
    void **p;
    size_t n, cap;
} arena;

void *arena_alloc(arena *a, size_t size);
void arena_free(arena *a);
Google__Protobuf__Any *pack_any(arena *a, const ProtobufCMessage *msg);
/* Headers, timeout, GET query and the given requests, as the suite wants. */
RequestInfo *request_info(arena *a, rpc_call *call, Google__Protobuf__Any **reqs, size_t n_reqs);
void add_metadata(rpc_call *call, Header *const *h, size_t n, bool trailers);

void conformance_server_stream(rpc_call *call, const ProtobufCMessage *request, void *sd);
void conformance_client_stream(rpc_call *call, const ProtobufCMessage *request, void *sd);
void conformance_bidi_stream(rpc_call *call, const ProtobufCMessage *request, void *sd);

#endif
