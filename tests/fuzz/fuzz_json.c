/*
 * fuzz_json.c - libFuzzer target for the proto3 JSON decoder and encoder.
 *
 * An input starting with "<full message name>\n" is decoded as that type (so
 * seeds stay meaningful when the API grows); otherwise the first byte picks a
 * type from the table generated for libchcp (the API messages and the
 * well-known types, Any included). The rest is decoded as JSON into it. Whatever decodes must
 * encode, and that encoding must decode again and re-encode to the same bytes: the codec is its own
 * oracle. The cheap pre-decode checks (element count of the text, the
 * binary scan of the decoded message's packed form) and the memory walk run
 * on every input too. Crashes, leaks and sanitizer reports are the other findings.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_internal.h"

extern const protometa_table chcp_protometa;

static char *encode_or_die(const ProtobufCMessage *m, const char *what)
{
    chcp_buf out = CHCP_BUF_INIT;
    chcp_error *err = NULL;
    if (protojson_encode(m, &out, &err) < 0) {
        fprintf(stderr, "%s: encoding a decoded %s failed: %s\n", what, m->descriptor->name,
                err->message);
        abort();
    }
    return buf_steal_str(&out);
}

static const ProtobufCMessageDescriptor *pick_type(const uint8_t **data, size_t *size)
{
    const uint8_t *nl = memchr(*data, '\n', *size < 128 ? *size : 128);
    if (nl) {
        char name[128];
        memcpy(name, *data, (size_t)(nl - *data));
        name[nl - *data] = '\0';
        const ProtobufCMessageDescriptor *d = protometa_find_by_name(name);
        if (d) {
            *size -= (size_t)(nl + 1 - *data);
            *data = nl + 1;
            return d;
        }
    }
    const ProtobufCMessageDescriptor *d =
        chcp_protometa.messages[(*data)[0] % chcp_protometa.n_messages].descriptor;
    (*data)++;
    (*size)--;
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || chcp_protometa.n_messages == 0)
        return 0;
    const ProtobufCMessageDescriptor *desc = pick_type(&data, &size);
    chcp_error *err = NULL;
    size_t values = protojson_count_values((const char *)data, size, 1u << 20);
    ProtobufCMessage *m = protojson_decode(desc, (const char *)data, size, &err);
    if (!m) {
        if (!err || err->code != CHCP_INVALID_ARGUMENT || !err->message)
            abort();
        error_free(err);
        return 0;
    }
    /* Decoding fills at most one field, entry or element per counted value. */
    if (values == 0 || rpc_message_memory(m) < desc->sizeof_message)
        abort();
    size_t packed_len = protobuf_c_message_get_packed_size(m);
    uint8_t *packed = malloc(packed_len ? packed_len : 1);
    protobuf_c_message_pack(m, packed);
    if (rpc_check_binary(desc, packed, packed_len, (size_t)1 << 40, &err) < 0) {
        /* only nesting can fail with no element limit, and JSON has the same limit */
        fprintf(stderr, "binary scan refused a decoded message: %s\n", err->message);
        abort();
    }
    free(packed);
    char *first = encode_or_die(m, "first");
    ProtobufCMessage *again = protojson_decode(desc, first, strlen(first), &err);
    if (!again) {
        fprintf(stderr, "own output rejected: %s\n%s\n", err->message, first);
        abort();
    }
    char *second = encode_or_die(again, "second");
    if (strcmp(first, second) != 0) {
        fprintf(stderr, "not stable:\n%s\n%s\n", first, second);
        abort();
    }
    free(first);
    free(second);
    protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
