/*
 * rpc_limits.c - what a request message may cost: an element and nesting
 * check on the raw bytes before decoding, and the heap a decoded message
 * holds, which the transport charges to the request's memory budget.
 *
 * The message size limit alone does not bound memory. protobuf-c allocates a
 * struct for every submessage and a bookkeeping slot for every field it
 * meets, so two wire bytes (an empty repeated DiskConfig) become a few
 * hundred bytes of heap; jansson's DOM costs about as much per JSON value.
 * A 4 MiB body could become gigabytes. So before anything is allocated the
 * binary form is walked against its descriptor and the JSON text is scanned
 * (protojson_count_values), and a message with more elements (field
 * occurrences, list and map entries, packed values) than the limit, or
 * nested deeper than the decoders allow, is refused; that costs one pass over
 * the bytes and no allocation. Malformed input is left for the real decoder
 * to report.
 */
#include "rpc/protojson_internal.h"
#include "rpc/rpc_internal.h"

/* What malloc adds to each allocation, for the memory estimate. */
#define MALLOC_OVERHEAD 16

typedef struct pb_scan {
    size_t elements, max;
    int depth;
} pb_scan;

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

static bool packable(ProtobufCType t)
{
    return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
           t != PROTOBUF_C_TYPE_MESSAGE;
}

/* Values in a packed repeated field's payload. */
static size_t packed_count(ProtobufCType t, const uint8_t *p, size_t len)
{
    switch (t) {
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return len / 4;
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return len / 8;
    default: { /* varints: one ends at each byte without the high bit */
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
            n += !(p[i] & 0x80);
        return n;
    }
    }
}

/* 1: within limits (or malformed, for protobuf-c to report), 0: too many
 * elements, -1: nested too deeply. */
static int scan_message(pb_scan *s, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                        size_t len)
{
    if (++s->depth > PJ_MAX_DEPTH)
        return -1;
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key, l;
        if (!read_varint(&p, end, &key))
            break;
        const ProtobufCFieldDescriptor *f =
            key >> 3 <= UINT32_MAX
                ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                : NULL;
        size_t n = 1;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, end, &l))
                goto out;
            break;
        case 1:
            if (end - p < 8)
                goto out;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                goto out;
            p += 4;
            break;
        case 2:
            if (!read_varint(&p, end, &l) || l > (uint64_t)(end - p))
                goto out;
            if (f && f->label == PROTOBUF_C_LABEL_REPEATED && packable(f->type)) {
                n += packed_count(f->type, p, (size_t)l);
            } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int r = scan_message(s, f->descriptor, p, (size_t)l);
                if (r <= 0)
                    return r;
            }
            p += l;
            break;
        default: /* groups: protobuf-c refuses them */
            goto out;
        }
        s->elements += n;
        if (s->elements > s->max)
            return 0;
    }
out:
    s->depth--;
    return 1;
}

static int too_many(size_t max, chcp_error **err)
{
    return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                     "message has more than %zu elements (fields, list and map entries); the "
                     "limit is CHCP_MAX_MESSAGE_ELEMENTS",
                     max);
}

int rpc_check_binary(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                     size_t max_elements, chcp_error **err)
{
    pb_scan s = {.max = max_elements};
    int r = scan_message(&s, desc, data, len);
    if (r == 0)
        return too_many(max_elements, err);
    if (r < 0)
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "unmarshal message: messages nested deeper than %d", PJ_MAX_DEPTH);
    return 0;
}

int rpc_check_json(const char *json, size_t len, size_t max_elements, chcp_error **err)
{
    if (protojson_count_values(json, len, max_elements) > max_elements)
        return too_many(max_elements, err);
    return 0;
}

/* ---- the heap a decoded message holds ----------------------------------- */

static size_t value_memory(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s ? strlen(s) + 1 + MALLOC_OVERHEAD : 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return b->data ? b->len + MALLOC_OVERHEAD : 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? rpc_message_memory(m) : 0;
    }
    default:
        return 0; /* inside the struct or the array */
    }
}

size_t rpc_message_memory(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    size_t total = d->sizeof_message + MALLOC_OVERHEAD;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = PJ_MEMBER(size_t, m, f->quantifier_offset);
            size_t size = pj_value_size(f->type);
            const char *arr = *(const char *const *)member;
            if (!n || !arr)
                continue;
            total += n * size + MALLOC_OVERHEAD;
            if (!packable(f->type))
                for (size_t k = 0; k < n; k++)
                    total += value_memory(f, arr + k * size);
            continue;
        }
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            PJ_MEMBER(uint32_t, m, f->quantifier_offset) != f->id)
            continue;
        total += value_memory(f, member);
    }
    if (m->n_unknown_fields) {
        total += m->n_unknown_fields * sizeof(*m->unknown_fields) + MALLOC_OVERHEAD;
        for (unsigned i = 0; i < m->n_unknown_fields; i++)
            total += m->unknown_fields[i].len + MALLOC_OVERHEAD;
    }
    return total;
}
