/*
 * rpc_reflection.c - gRPC server reflection (grpc.reflection.v1 and
 * v1alpha ServerReflectionInfo) over the descriptors compiled into the
 * binary, so grpcurl, grpcui, Postman and `buf curl --reflect` can list and
 * call the services without the .proto files.
 *
 * The descriptors are the build's own FileDescriptorSet, embedded file by
 * file by protometa-gen --files (serialized FileDescriptorProto, imports,
 * symbols), so what reflection says always matches what the server decodes.
 * Each request on the bidi stream gets one response, in order, as grpc-go's
 * reflection server answers: a file comes with those it imports that were
 * not sent on this stream yet; an unknown file or symbol is an ErrorResponse
 * (NOT_FOUND) and the stream goes on. v1alpha has the same wire format as
 * v1, so its messages are re-read as v1 ones and the answer written back.
 */
#include "rpc/rpc_internal.h"

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"

#include <string.h>

typedef Grpc__Reflection__V1__ServerReflectionRequest ReflRequest;
typedef Grpc__Reflection__V1__ServerReflectionResponse ReflResponse;

#define NOT_FOUND 5

typedef struct refl_stream {
    rpc_call *call;
    bool alpha;
    const protometa_file **sent; /* files already sent on this stream */
    size_t n_sent, cap_sent;
} refl_stream;

static void refl_free(refl_stream *r)
{
    free(r->sent);
    free(r);
}

static bool was_sent(const refl_stream *r, const protometa_file *f)
{
    for (size_t i = 0; i < r->n_sent; i++)
        if (r->sent[i] == f)
            return true;
    return false;
}

/* f, then (depth first) what it imports, skipping files already sent. */
static void add_file(refl_stream *r, const protometa_file *f, ProtobufCBinaryData *out, size_t *n,
                     size_t cap)
{
    if (!f || was_sent(r, f) || *n == cap)
        return;
    if (r->n_sent == r->cap_sent) {
        r->cap_sent = r->cap_sent ? r->cap_sent * 2 : 16;
        r->sent = xrealloc(r->sent, r->cap_sent * sizeof(*r->sent));
    }
    r->sent[r->n_sent++] = f;
    out[(*n)++] = (ProtobufCBinaryData){f->descriptor_len, (uint8_t *)f->descriptor};
    for (size_t i = 0; i < f->n_deps; i++)
        add_file(r, protometa_find_file(f->deps[i]), out, n, cap);
}

/* Answer one request into *resp (pointing into `store`). */
typedef struct refl_store {
    Grpc__Reflection__V1__FileDescriptorResponse files;
    ProtobufCBinaryData file_data[64];
    Grpc__Reflection__V1__ListServiceResponse list;
    Grpc__Reflection__V1__ServiceResponse services[64];
    Grpc__Reflection__V1__ServiceResponse *service_ptrs[64];
    Grpc__Reflection__V1__ExtensionNumberResponse ext;
    Grpc__Reflection__V1__ErrorResponse error;
    char message[512];
} refl_store;

static void set_error(ReflResponse *resp, refl_store *st, const char *what, const char *name)
{
    grpc__reflection__v1__error_response__init(&st->error);
    st->error.error_code = NOT_FOUND;
    snprintf(st->message, sizeof(st->message), "%s not found: %s", what, name);
    st->error.error_message = st->message;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = &st->error;
}

static void set_files(refl_stream *r, ReflResponse *resp, refl_store *st, const protometa_file *f)
{
    grpc__reflection__v1__file_descriptor_response__init(&st->files);
    size_t n = 0;
    /* Asked for again: it is sent again (the client asked), its imports not. */
    if (was_sent(r, f))
        st->file_data[n++] = (ProtobufCBinaryData){f->descriptor_len, (uint8_t *)f->descriptor};
    else
        add_file(r, f, st->file_data, &n, ARRAY_SIZE(st->file_data));
    st->files.file_descriptor_proto = st->file_data;
    st->files.n_file_descriptor_proto = n;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp->file_descriptor_response = &st->files;
}

static void set_services(refl_stream *r, ReflResponse *resp, refl_store *st)
{
    grpc__reflection__v1__list_service_response__init(&st->list);
    const char *names[64];
    size_t n = rpc_server_services(r->call->server, names, ARRAY_SIZE(names));
    for (size_t i = 0; i < n; i++) {
        grpc__reflection__v1__service_response__init(&st->services[i]);
        st->services[i].name = (char *)names[i];
        st->service_ptrs[i] = &st->services[i];
    }
    st->list.service = st->service_ptrs;
    st->list.n_service = n;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp->list_services_response = &st->list;
}

/* 0, or -1 for a request that names nothing (the stream ends). */
static int answer(refl_stream *r, const ReflRequest *req, ReflResponse *resp, refl_store *st)
{
    grpc__reflection__v1__server_reflection_response__init(resp);
    resp->valid_host = req->host;
    resp->original_request = (ReflRequest *)req;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        set_services(r, resp, st);
        return 0;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME: {
        const protometa_file *f = protometa_find_file(req->file_by_filename);
        if (f)
            set_files(r, resp, st, f);
        else
            set_error(resp, st, "file", req->file_by_filename);
        return 0;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
        const protometa_file *f = protometa_find_symbol(req->file_containing_symbol);
        if (f)
            set_files(r, resp, st, f);
        else
            set_error(resp, st, "symbol", req->file_containing_symbol);
        return 0;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION: {
        /* No file here defines extensions. */
        const char *type = req->file_containing_extension->containing_type;
        set_error(resp, st, "extension of", type ? type : "");
        return 0;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
        const char *type = req->all_extension_numbers_of_type;
        if (!protometa_find_symbol(type)) {
            set_error(resp, st, "type", type);
            return 0;
        }
        grpc__reflection__v1__extension_number_response__init(&st->ext);
        st->ext.base_type_name = (char *)(type[0] == '.' ? type + 1 : type);
        resp->message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
        resp->all_extension_numbers_response = &st->ext;
        return 0;
    }
    default:
        return -1;
    }
}

static void refl_writable(rpc_call *call, void *ud)
{
    /* May deliver (and end) right away: the last thing done here. */
    rpc_call_recv_pause(call, false);
}

static void refl_message(rpc_call *call, const ProtobufCMessage *msg, void *ud)
{
    refl_stream *r = ud;
    ReflRequest *converted = NULL;
    const ReflRequest *req = (const ReflRequest *)msg;
    if (r->alpha) {
        /* Same wire format: read the v1alpha request as a v1 one. */
        chcp_buf b = CHCP_BUF_INIT;
        buf_reserve(&b, protobuf_c_message_get_packed_size(msg));
        b.len = protobuf_c_message_pack(msg, b.data);
        converted = grpc__reflection__v1__server_reflection_request__unpack(NULL, b.len, b.data);
        buf_free(&b);
        req = converted;
    }
    refl_store *st = xcalloc(1, sizeof(*st));
    ReflResponse resp;
    bool ok = req && answer(r, req, &resp, st) == 0;
    if (ok && r->alpha) {
        chcp_buf b = CHCP_BUF_INIT;
        buf_reserve(&b, protobuf_c_message_get_packed_size(&resp.base));
        b.len = protobuf_c_message_pack(&resp.base, b.data);
        Grpc__Reflection__V1alpha__ServerReflectionResponse *alpha =
            grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, b.len, b.data);
        buf_free(&b);
        if (alpha) {
            rpc_call_send(call, &alpha->base);
            protobuf_c_message_free_unpacked(&alpha->base, NULL);
        }
    } else if (ok) {
        rpc_call_send(call, &resp.base);
    }
    free(st);
    if (converted)
        protobuf_c_message_free_unpacked(&converted->base, NULL);
    if (!ok) {
        rpc_call_fail(call, CHCP_INVALID_ARGUMENT,
                      "invalid ServerReflectionRequest: no message_request is set");
        refl_free(r);
        return;
    }
    /* A client that asks faster than it reads waits for its answers. */
    if (!rpc_call_canceled(call) && !rpc_call_send_ready(call)) {
        rpc_call_recv_pause(call, true);
        rpc_call_on_writable(call, refl_writable, r);
    }
}

static void refl_end(rpc_call *call, void *ud)
{
    rpc_call_succeed(call, NULL);
    refl_free(ud);
}

static void refl_cancel(rpc_call *call, void *ud)
{
    rpc_call_fail(call, CHCP_CANCELED, "canceled");
    refl_free(ud);
}

static void refl_start(rpc_call *call, bool alpha)
{
    static const rpc_recv_hooks hooks = {refl_message, refl_end};
    refl_stream *r = xcalloc(1, sizeof(*r));
    r->call = call;
    r->alpha = alpha;
    rpc_call_on_cancel(call, refl_cancel, r);
    rpc_call_recv(call, &hooks, r);
}

static void refl_v1(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    refl_start(call, false);
}

static void refl_v1alpha(rpc_call *call, const ProtobufCMessage *request, void *sd)
{
    refl_start(call, true);
}

int rpc_server_enable_reflection(rpc_server *s, chcp_error **err)
{
    static const rpc_method_impl v1[] = {{"ServerReflectionInfo", refl_v1}};
    static const rpc_method_impl v1alpha[] = {{"ServerReflectionInfo", refl_v1alpha}};
    if (rpc_server_register(s, &grpc__reflection__v1__server_reflection__descriptor, v1, 1, NULL,
                            err) < 0)
        return -1;
    return rpc_server_register(s, &grpc__reflection__v1alpha__server_reflection__descriptor,
                               v1alpha, 1, NULL, err);
}
