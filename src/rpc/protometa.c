/*
 * protometa.c - the registry of generated protometa tables.
 *
 * The JSON codec looks up every message it encodes or decodes here (for
 * json_name, map entries and field order), Any resolves type URLs here, and
 * the rpc layer asks for method idempotency. Lookups sit on the request path,
 * so they are open-addressing hash lookups keyed by descriptor pointer or full
 * name. The registry is filled at start (the libchcp table on first use, then
 * whatever the binary registers) and is read-only afterwards, so lookups take
 * no lock.
 */
#include "rpc/protojson.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Generated from every .proto compiled into libchcp (WKTs and the API). */
extern const protometa_table chcp_protometa;

typedef struct slot {
    const void *key; /* descriptor pointer, or full-name string */
    const protometa_message *msg;
} slot;

typedef struct hmap {
    slot *slots;
    size_t cap; /* power of two */
    size_t len;
} hmap;

#define MAX_TABLES 64

static struct {
    pthread_mutex_t lock;
    hmap by_desc;
    hmap by_name;
    const protometa_table *tables[MAX_TABLES];
    size_t n_tables;
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;

static size_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static size_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

static slot *hmap_find(const hmap *m, const void *key, bool by_name)
{
    if (m->cap == 0)
        return NULL;
    size_t i = (by_name ? hash_str(key) : hash_ptr(key)) & (m->cap - 1);
    for (;;) {
        slot *s = &m->slots[i];
        if (!s->key)
            return s;
        if (by_name ? strcmp(s->key, key) == 0 : s->key == key)
            return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static void hmap_put(hmap *m, const void *key, const protometa_message *msg, bool by_name);

static void hmap_grow(hmap *m, bool by_name)
{
    hmap bigger = {xcalloc(m->cap ? m->cap * 2 : 64, sizeof(slot)), m->cap ? m->cap * 2 : 64, 0};
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            hmap_put(&bigger, m->slots[i].key, m->slots[i].msg, by_name);
    free(m->slots);
    *m = bigger;
}

static void hmap_put(hmap *m, const void *key, const protometa_message *msg, bool by_name)
{
    if ((m->len + 1) * 2 > m->cap)
        hmap_grow(m, by_name);
    slot *s = hmap_find(m, key, by_name);
    if (!s->key) {
        s->key = key;
        s->msg = msg;
        m->len++;
    }
    /* An already known descriptor keeps its first entry: the same .proto
     * compiled into two tables yields identical rows. */
}

static void register_locked(const protometa_table *table)
{
    for (size_t i = 0; i < reg.n_tables; i++)
        if (reg.tables[i] == table)
            return;
    if (reg.n_tables == MAX_TABLES)
        abort(); /* a build with this many tables is a programming error */
    reg.tables[reg.n_tables++] = table;
    for (size_t i = 0; i < table->n_messages; i++) {
        const protometa_message *m = &table->messages[i];
        hmap_put(&reg.by_desc, m->descriptor, m, false);
        hmap_put(&reg.by_name, m->descriptor->name, m, true);
    }
}

static void register_builtin(void)
{
    pthread_mutex_lock(&reg.lock);
    register_locked(&chcp_protometa);
    pthread_mutex_unlock(&reg.lock);
}

void protometa_register(const protometa_table *table)
{
    pthread_once(&builtin_once, register_builtin);
    pthread_mutex_lock(&reg.lock);
    register_locked(table);
    pthread_mutex_unlock(&reg.lock);
}

const protometa_message *protometa_find_message(const ProtobufCMessageDescriptor *desc)
{
    pthread_once(&builtin_once, register_builtin);
    const slot *s = hmap_find(&reg.by_desc, desc, false);
    return s && s->key ? s->msg : NULL;
}

const ProtobufCMessageDescriptor *protometa_find_by_name(const char *full_name)
{
    pthread_once(&builtin_once, register_builtin);
    const slot *s = hmap_find(&reg.by_name, full_name, true);
    return s && s->key ? s->msg->descriptor : NULL;
}

const protometa_method *protometa_find_method(const char *service, const char *method)
{
    pthread_once(&builtin_once, register_builtin);
    for (size_t t = 0; t < reg.n_tables; t++) {
        const protometa_table *table = reg.tables[t];
        for (size_t i = 0; i < table->n_methods; i++) {
            const protometa_method *m = &table->methods[i];
            if (strcmp(m->service, service) == 0 && strcmp(m->method, method) == 0)
                return m;
        }
    }
    return NULL;
}

/* Reflection lookups are rare (a client exploring the API): a scan. */
const protometa_file *protometa_find_file(const char *name)
{
    pthread_once(&builtin_once, register_builtin);
    for (size_t t = 0; t < reg.n_tables; t++)
        for (size_t i = 0; i < reg.tables[t]->n_files; i++)
            if (strcmp(reg.tables[t]->files[i].name, name) == 0)
                return &reg.tables[t]->files[i];
    return NULL;
}

const protometa_file *protometa_find_symbol(const char *symbol)
{
    pthread_once(&builtin_once, register_builtin);
    if (symbol[0] == '.')
        symbol++;
    for (size_t t = 0; t < reg.n_tables; t++)
        for (size_t i = 0; i < reg.tables[t]->n_files; i++) {
            const protometa_file *f = &reg.tables[t]->files[i];
            for (size_t j = 0; j < f->n_symbols; j++)
                if (strcmp(f->symbols[j], symbol) == 0)
                    return f;
        }
    return NULL;
}

protometa_idempotency protometa_method_idempotency(const char *service, const char *method)
{
    const protometa_method *m = protometa_find_method(service, method);
    return m ? m->idempotency : PROTOMETA_IDEMPOTENCY_UNKNOWN;
}
