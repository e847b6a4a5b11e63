/*
 * fuzz_json.c - libFuzzer target for the proto3 JSON decoder and encoder.
 *
 * An input starting with "<full message name>\n" is decoded as that type (so
 * seeds stay meaningful when the API grows); otherwise the first byte picks a
 * type from the table generated for libchcp (the API messages and the
 * well-known types, Any included). The rest is decoded as JSON into it. Whatever decodes must
 * encode, and that encoding must decode again and re-encode to the same bytes: the codec is its own
 * oracle. Crashes, leaks and sanitizer reports are the other findings.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/protojson.h"

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
    ProtobufCMessage *m = protojson_decode(desc, (const char *)data, size, &err);
    if (!m) {
        if (!err || err->code != CHCP_INVALID_ARGUMENT || !err->message)
            abort();
        error_free(err);
        return 0;
    }
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
