/*
 * protojson.h - the proto3 JSON mapping over protobuf-c descriptors, and the
 * "protometa" side tables that give it what protobuf-c does not record.
 *
 * protobuf-c's descriptors lack json_name, the map-entry flag and method
 * options (idempotency_level, needed for Connect GET). A build-time tool
 * (tools/protometa-gen.c) reads `protoc --descriptor_set_out` and emits a
 * protometa_table for every message and method compiled into a binary; the
 * binary registers its table(s) at start with protometa_register().
 *
 * Part of the rpc module's interface (rpc.h includes it).
 */
#ifndef CHCP_PROTOJSON_H
#define CHCP_PROTOJSON_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/core.h"

typedef struct protometa_message {
    const ProtobufCMessageDescriptor *descriptor;
    /* json_name of each field, in the order of descriptor->fields. */
    const char *const *json_names;
    bool map_entry; /* a synthetic map<K,V> entry message */
    /* Indexes into descriptor->fields in .proto declaration order, the order
     * Go's protojson writes fields in; NULL when that is descriptor order
     * (protobuf-c sorts fields by number). */
    const unsigned *decl_order;
} protometa_message;

typedef enum protometa_idempotency {
    PROTOMETA_IDEMPOTENCY_UNKNOWN = 0,
    PROTOMETA_NO_SIDE_EFFECTS = 1,
    PROTOMETA_IDEMPOTENT = 2,
} protometa_idempotency;

typedef struct protometa_method {
    const char *service; /* "cloudhypervisor.v1.VmService" */
    const char *method;  /* "GetVmInfo" */
    protometa_idempotency idempotency;
    bool client_streaming; /* `stream` on the request */
    bool server_streaming; /* `stream` on the response */
} protometa_method;

/* A .proto file as compiled (protometa-gen --files), for server reflection. */
typedef struct protometa_file {
    const char *name;          /* "cloudhypervisor/v1/vm.proto" */
    const uint8_t *descriptor; /* serialized google.protobuf.FileDescriptorProto */
    size_t descriptor_len;
    const char *const *deps; /* names of the files it imports */
    size_t n_deps;
    const char *const *symbols; /* fully qualified: messages, enums, services, methods */
    size_t n_symbols;
} protometa_file;

typedef struct protometa_table {
    const protometa_message *messages;
    size_t n_messages;
    const protometa_method *methods;
    size_t n_methods;
    const protometa_file *files; /* NULL unless generated with --files */
    size_t n_files;
} protometa_table;

/*
 * Register a generated table (idempotent; tables are static data). Register
 * every table at start, before other threads use the codec: lookups are
 * lock-free and assume the registry no longer changes. The well-known types
 * compiled into libchcp are always known, registered or not.
 */
void protometa_register(const protometa_table *table);
const protometa_message *protometa_find_message(const ProtobufCMessageDescriptor *desc);
/* Lookup by full name without leading dot ("google.protobuf.Duration"), for Any. */
const ProtobufCMessageDescriptor *protometa_find_by_name(const char *full_name);
protometa_idempotency protometa_method_idempotency(const char *service, const char *method);
/* The method's generated entry (idempotency, streaming), NULL if unknown. */
const protometa_method *protometa_find_method(const char *service, const char *method);
/* Embedded files (reflection): by file name, or by a symbol it defines
 * (leading '.' allowed). NULL if no registered table has it. */
const protometa_file *protometa_find_file(const char *name);
const protometa_file *protometa_find_symbol(const char *symbol);

/*
 * Encode as connect-go's protojson.Marshal does: lowerCamelCase json names,
 * fields with default values omitted, 64-bit integers as strings, enums as
 * names, bytes as padded standard base64, well-known types in their special
 * forms. Appends to `out`.
 */
int protojson_encode(const ProtobufCMessage *msg, chcp_buf *out, chcp_error **err);

/*
 * Decode as connect-go does (protojson.Unmarshal with DiscardUnknown: unknown
 * fields are dropped), except that an unknown enum name is an error (as in
 * protojson without DiscardUnknown): dropping it would silently change the
 * request's meaning. Enum numbers are open (any int32). Accepts json_name and the
 * original field name, numbers as strings, strings as numbers where the
 * mapping allows, standard or URL-safe base64 with or without padding, null
 * as default, NaN/Infinity/-Infinity; uint64 values above INT64_MAX and the
 * exact digits of reals are kept. Rejects duplicate fields (under either
 * name), two members of one oneof, nesting deeper than 100 and "\u0000" in
 * strings (protobuf-c strings are NUL-terminated). The result is allocated
 * with the default allocator: free it with
 * protobuf_c_message_free_unpacked(msg, NULL). Errors are
 * CHCP_INVALID_ARGUMENT with a message naming the field path, e.g.
 * `invalid value for field "config.disks[1].path": expected a string, got number`.
 */
ProtobufCMessage *protojson_decode(const ProtobufCMessageDescriptor *desc, const char *json,
                                   size_t len, chcp_error **err);

/*
 * An upper bound on the number of values in JSON text (each container, list
 * element and object member counts), found in one pass without parsing or
 * allocating, so a body that would decode into millions of values can be
 * refused before jansson builds its tree. Counting stops once past `max`
 * (the result is then max + 1 or a little more).
 */
size_t protojson_count_values(const char *json, size_t len, size_t max);

#endif
