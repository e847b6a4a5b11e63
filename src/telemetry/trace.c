/*
 * trace.c - spans, W3C trace context and sampling.
 *
 * Sampling is ParentBased(TraceIdRatioBased(r)), decided at span start as the
 * spec says, but every span is *recorded*: operators want every failed call,
 * and a failure is only known when a span ends. So the export decision is
 * taken when the local root span ends: export the whole local trace if it was
 * sampled, or captured: any of its spans ended with status ERROR (unless
 * that is switched off), or tm_span_capture() was called on one of them (the
 * daemon does so for every RPC that did not end OK). Spans of an undecided
 * trace are held by the trace until then; a child that ends after its root
 * (an asynchronous VMM call outliving its request) follows the decision
 * already made. The sampled flag we propagate downstream stays what the
 * sampler said; captured spans carry the sampled bit in their OTLP flags so
 * back ends keep them.
 *
 * Cost: this runs on the event loop for every RPC, so recording is kept to a
 * few hundred instructions. Spans come from a pool (no malloc per span once
 * warm); attribute values are borrowed or copied into the span's inline
 * arena (no malloc per attribute); names are borrowed; a span handed to the
 * sink is self-contained, and the thread that exports it gives it back with
 * tm_span_release() through a lock-free list the loop takes in one swap.
 */
#include "telemetry/span_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

enum { TM_UNDECIDED, TM_EXPORT, TM_DROP };

/* The bookkeeping of one local trace (loop only): open spans, whether it is
 * captured, the ended spans held until the root decides, and the decision. */
struct tm_trace {
    tm_trace *next_free;
    tm_span *root; /* until the root ends */
    unsigned open;
    bool captured;
    uint8_t decision;
    char *tracestate; /* the remote parent's, or NULL */
    tm_span **held;
    uint32_t n_held, cap_held;
    tm_span *held_inline[6];
};

struct tm_tracer {
    double ratio;
    bool capture_errors;
    tm_span_sink_fn sink;
    void *sink_ud;
    tm_span *free_spans;         /* loop only */
    _Atomic(tm_span *) returned; /* released by any thread */
    tm_trace *free_traces;       /* loop only */
};

tm_tracer *tm_tracer_new(double sampling_ratio, tm_span_sink_fn sink, void *sink_ud)
{
    tm_tracer *t = xcalloc(1, sizeof(*t));
    t->ratio = sampling_ratio;
    t->capture_errors = true;
    t->sink = sink;
    t->sink_ud = sink_ud;
    atomic_init(&t->returned, NULL);
    return t;
}

void tm_tracer_set_capture_errors(tm_tracer *t, bool on)
{
    if (t)
        t->capture_errors = on;
}

static void free_span_list(tm_span *s)
{
    while (s) {
        tm_span *next = s->next;
        free(s);
        s = next;
    }
}

/* Every span must have been released (the pipeline is shut down first). */
void tm_tracer_free(tm_tracer *t)
{
    if (!t)
        return;
    free_span_list(t->free_spans);
    free_span_list(atomic_exchange(&t->returned, NULL));
    while (t->free_traces) {
        tm_trace *next = t->free_traces->next_free;
        free(t->free_traces);
        t->free_traces = next;
    }
    free(t);
}

/* ---- W3C trace context ---------------------------------------------------- */

void tm_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Lower-case hex only, as the W3C spec requires. */
static bool parse_hex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

bool tm_traceparent_parse(const char *traceparent, const char *tracestate, tm_span_context *out)
{
    memset(out, 0, sizeof(*out));
    if (!traceparent)
        return false;
    size_t len = strlen(traceparent);
    uint8_t version;
    if (len < 55 || !parse_hex(traceparent, 1, &version) || version == 0xff)
        return false;
    /* Version 00 is exactly 55 characters; later versions may append fields
     * after a '-', which we ignore (forward compatibility rule). */
    if ((version == 0 && len != 55) || (len > 55 && traceparent[55] != '-'))
        return false;
    const char *p = traceparent;
    if (p[2] != '-' || p[35] != '-' || p[52] != '-')
        return false;
    if (!parse_hex(p + 3, 16, out->trace_id) || !parse_hex(p + 36, 8, out->span_id) ||
        !parse_hex(p + 53, 1, &out->flags))
        return false;
    if (all_zero(out->trace_id, 16) || all_zero(out->span_id, 8))
        return false;
    out->remote = true;
    if (tracestate && tracestate[0] && strlen(tracestate) < TM_TRACESTATE_MAX)
        out->tracestate = tracestate;
    return true;
}

void tm_traceparent_format(const tm_span_context *ctx, char out[56])
{
    char trace[33], span[17], flags[3];
    tm_hex(ctx->trace_id, 16, trace);
    tm_hex(ctx->span_id, 8, span);
    tm_hex(&ctx->flags, 1, flags);
    snprintf(out, 56, "00-%s-%s-%s", trace, span, flags);
}

/* ---- sampling ------------------------------------------------------------- */

/* TraceIdRatioBased as otel-go does it: the low 63 bits of the trace id's
 * last 8 bytes against ratio * 2^63. Deterministic, and monotone in the
 * ratio: a higher ratio samples a superset. */
bool tm_tracer_should_sample(double ratio, const uint8_t trace_id[16])
{
    if (ratio >= 1)
        return true;
    if (!(ratio > 0))
        return false;
    uint64_t x = 0;
    for (int i = 8; i < 16; i++)
        x = x << 8 | trace_id[i];
    uint64_t bound = (uint64_t)(ratio * 9223372036854775808.0);
    return (x >> 1) < bound;
}

/*
 * Trace and span ids: xoshiro256** seeded once from the kernel's CSPRNG. Ids
 * must be unique and unpredictable enough to spread over the id space (W3C),
 * not secret; a getrandom() system call per id cost more than the rest of a
 * span. State per thread: spans are started on the loop, and nothing else
 * shares (or locks) it.
 */
static _Thread_local uint64_t rng_state[4];
static _Thread_local bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    if (__builtin_expect(!rng_seeded, 0)) {
        while (getrandom(rng_state, sizeof(rng_state), 0) != (ssize_t)sizeof(rng_state))
            ;
        rng_seeded = true;
    }
    uint64_t *st = rng_state;
    uint64_t result = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return result;
}

static void random_id(uint8_t *b, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            memcpy(b + i, &r, 8);
        }
    } while (all_zero(b, n));
}

/* ---- the pools -------------------------------------------------------------- */

static tm_span *span_get(tm_tracer *t)
{
    tm_span *s = t->free_spans;
    if (!s)
        s = atomic_exchange_explicit(&t->returned, NULL, memory_order_acquire);
    if (s) {
        t->free_spans = s->next;
        return s;
    }
    return xmalloc(sizeof(tm_span));
}

static void free_chunks(tm_span *s)
{
    tm_arena_chunk *c = s->chunks;
    while (c) {
        tm_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    s->chunks = NULL;
}

/* Push the chain first..last (linked by `next`) onto the returned list. */
static void give_back(tm_tracer *t, tm_span *first, tm_span *last)
{
    tm_span *head = atomic_load_explicit(&t->returned, memory_order_relaxed);
    do {
        last->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&t->returned, &head, first,
                                                    memory_order_release, memory_order_relaxed));
}

void tm_span_release(tm_span *s)
{
    if (!s)
        return;
    free_chunks(s);
    give_back(s->tracer, s, s);
}

void tm_span_release_batch(tm_span *const *spans, size_t n)
{
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        free_chunks(spans[i]);
        spans[i]->next = i + 1 < n ? spans[i + 1] : NULL;
    }
    /* One atomic operation for the whole batch (all from one tracer). */
    give_back(spans[0]->tracer, spans[0], spans[n - 1]);
}

static tm_trace *trace_get(tm_tracer *t)
{
    tm_trace *tr = t->free_traces;
    if (tr)
        t->free_traces = tr->next_free;
    else
        tr = xmalloc(sizeof(*tr));
    tr->root = NULL;
    tr->open = 0;
    tr->captured = false;
    tr->decision = TM_UNDECIDED;
    tr->tracestate = NULL;
    tr->held = tr->held_inline;
    tr->n_held = 0;
    tr->cap_held = ARRAY_SIZE(tr->held_inline);
    return tr;
}

static void trace_put(tm_tracer *t, tm_trace *tr)
{
    if (tr->held != tr->held_inline)
        free(tr->held);
    free(tr->tracestate);
    tr->next_free = t->free_traces;
    t->free_traces = tr;
}

/* ---- the arena ------------------------------------------------------------------ */

static void *arena_alloc(tm_span *s, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (s->arena_used + n <= sizeof(s->arena)) {
        void *p = s->arena + s->arena_used;
        s->arena_used += n;
        return p;
    }
    tm_arena_chunk *c = s->chunks;
    if (!c || c->used + n > c->cap) {
        size_t cap = n > 1024 ? n : 1024;
        c = xmalloc(sizeof(*c) + cap);
        c->used = 0;
        c->cap = cap;
        c->next = s->chunks;
        s->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static const char *arena_strdup(tm_span *s, const char *str, size_t len)
{
    char *p = arena_alloc(s, len + 1);
    memcpy(p, str, len);
    p[len] = '\0';
    return p;
}

/* ---- spans ---------------------------------------------------------------- */

static tm_span *span_new(tm_tracer *t, tm_trace *tr, const char *name, tm_span_kind kind,
                         uint64_t start_ns)
{
    tm_span *s = span_get(t);
    s->next = NULL;
    s->tracer = t;
    s->trace = tr;
    s->has_parent = s->parent_remote = s->ended = false;
    s->kind = (uint8_t)kind;
    s->status = TM_STATUS_UNSET;
    s->name = name;
    s->status_message = NULL;
    s->end_ns = 0;
    s->n_blocks = 0;
    s->attrs = s->inline_attrs;
    s->n_attrs = 0;
    s->cap_attrs = TM_INLINE_ATTRS;
    s->dropped_attrs = 0;
    s->events = NULL;
    s->n_events = s->cap_events = s->dropped_events = 0;
    s->arena_used = 0;
    s->chunks = NULL;
    s->ctx.remote = false;
    s->ctx.tracestate =
        tr->tracestate ? arena_strdup(s, tr->tracestate, strlen(tr->tracestate)) : NULL;
    random_id(s->ctx.span_id, 8);
    tr->open++;
    s->start_ns = start_ns;
    return s;
}

/*
 * Unix time from a monotonic reading, with the offset between the two clocks
 * re-read once a second: the hot path takes the reading it already has (the
 * request's arrival, the duration metric's end) instead of one more
 * clock_gettime per timestamp.
 */
uint64_t tm_unix_ns_from_mono(uint64_t mono_ns)
{
    static _Thread_local uint64_t offset, taken_at;
    if (!taken_at || mono_ns - taken_at > 1000000000ull || mono_ns < taken_at) {
        uint64_t real = time_real_ns(), mono = time_mono_ns();
        offset = real - mono;
        taken_at = mono;
    }
    return mono_ns + offset;
}

tm_span *tm_span_start(tm_tracer *t, const char *name, tm_span_kind kind,
                       const tm_span_context *parent)
{
    return t ? tm_span_start_at(t, name, kind, parent, time_real_ns()) : NULL;
}

tm_span *tm_span_start_at(tm_tracer *t, const char *name, tm_span_kind kind,
                          const tm_span_context *parent, uint64_t start_unix_ns)
{
    if (!t)
        return NULL;
    tm_trace *tr = trace_get(t);
    if (parent && parent->tracestate)
        tr->tracestate = xstrdup(parent->tracestate);
    tm_span *s = span_new(t, tr, name, kind, start_unix_ns);
    tr->root = s;
    if (parent) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent_span_id, parent->span_id, 8);
        s->has_parent = true;
        s->parent_remote = parent->remote;
        s->ctx.flags = parent->flags & 1; /* ParentBased: follow the parent */
    } else {
        random_id(s->ctx.trace_id, 16);
        s->ctx.flags = tm_tracer_should_sample(t->ratio, s->ctx.trace_id) ? 1 : 0;
    }
    return s;
}

tm_span *tm_span_start_child(tm_span *parent, const char *name, tm_span_kind kind)
{
    if (!parent || !parent->trace)
        return NULL;
    tm_span *s = span_new(parent->tracer, parent->trace, name, kind, time_real_ns());
    memcpy(s->ctx.trace_id, parent->ctx.trace_id, 16);
    memcpy(s->parent_span_id, parent->ctx.span_id, 8);
    s->has_parent = true;
    s->ctx.flags = parent->ctx.flags;
    return s;
}

/* The slot for `key`: the existing one (keys compare by address first, as
 * they are literals, then by content), or a new one. */
static tm_kv *attr_slot(tm_span *s, const char *key)
{
    if (!s || s->ended)
        return NULL;
    for (uint32_t i = 0; i < s->n_attrs; i++)
        if (s->attrs[i].key == key || strcmp(s->attrs[i].key, key) == 0)
            return &s->attrs[i];
    if (s->n_attrs >= TM_MAX_ATTRIBUTES) {
        s->dropped_attrs++;
        return NULL;
    }
    if (s->n_attrs == s->cap_attrs) {
        tm_kv *more = arena_alloc(s, 2 * s->cap_attrs * sizeof(tm_kv));
        memcpy(more, s->attrs, s->n_attrs * sizeof(tm_kv));
        s->attrs = more;
        s->cap_attrs *= 2;
    }
    tm_kv *kv = &s->attrs[s->n_attrs++];
    kv->key = key;
    return kv;
}

/* A new slot, the key not looked for (tm_span_add_*: the caller knows). */
static tm_kv *attr_append(tm_span *s, const char *key)
{
    if (!s || s->ended)
        return NULL;
    if (s->n_attrs < s->cap_attrs && s->n_attrs < TM_MAX_ATTRIBUTES) {
        tm_kv *kv = &s->attrs[s->n_attrs++];
        kv->key = key;
        return kv;
    }
    return attr_slot(s, key);
}

static void put_string(tm_kv *kv, tm_span *s, const char *value, size_t len, bool copy)
{
    kv->type = TM_STR;
    kv->len = (uint32_t)len;
    kv->v.s = copy ? arena_strdup(s, value, len) : value;
}

void tm_span_add_str(tm_span *s, const char *key, const char *value, size_t len)
{
    tm_kv *kv = attr_append(s, key);
    if (kv)
        put_string(kv, s, value, len, true);
}

void tm_span_add_static_str(tm_span *s, const char *key, const char *value)
{
    tm_kv *kv = attr_append(s, key);
    if (kv)
        put_string(kv, s, value, strlen(value), false);
}

void tm_span_add_int(tm_span *s, const char *key, int64_t value)
{
    tm_kv *kv = attr_append(s, key);
    if (kv) {
        kv->type = TM_INT;
        kv->v.i = value;
    }
}

static void set_string(tm_span *s, const char *key, const char *value, bool copy)
{
    tm_kv *kv = attr_slot(s, key);
    if (!kv)
        return;
    value = value ? value : "";
    size_t len = strlen(value);
    kv->type = TM_STR;
    kv->len = (uint32_t)len;
    kv->v.s = copy ? arena_strdup(s, value, len) : value;
}

void tm_span_set_str(tm_span *s, const char *key, const char *value)
{
    set_string(s, key, value, true);
}

void tm_span_set_static_str(tm_span *s, const char *key, const char *value)
{
    set_string(s, key, value, false);
}

void tm_span_set_int(tm_span *s, const char *key, int64_t value)
{
    tm_kv *kv = attr_slot(s, key);
    if (kv) {
        kv->type = TM_INT;
        kv->v.i = value;
    }
}

void tm_span_set_double(tm_span *s, const char *key, double value)
{
    tm_kv *kv = attr_slot(s, key);
    if (kv) {
        kv->type = TM_DOUBLE;
        kv->v.d = value;
    }
}

void tm_span_set_bool(tm_span *s, const char *key, bool value)
{
    tm_kv *kv = attr_slot(s, key);
    if (kv) {
        kv->type = TM_BOOL;
        kv->v.b = value;
    }
}

void tm_span_add_block(tm_span *s, const tm_attr_block *b)
{
    if (!s || s->ended || !b)
        return;
    if (s->n_blocks < TM_MAX_BLOCKS)
        s->blocks[s->n_blocks++] = b;
    else
        s->dropped_attrs += b->count;
}

void tm_span_add_event(tm_span *s, const char *name, const char *const *kv)
{
    if (!s || s->ended)
        return;
    if (s->n_events >= TM_MAX_EVENTS) {
        s->dropped_events++;
        return;
    }
    if (s->n_events == s->cap_events) {
        uint32_t cap = s->cap_events ? 2 * s->cap_events : 4;
        tm_event *more = arena_alloc(s, cap * sizeof(tm_event));
        if (s->n_events)
            memcpy(more, s->events, s->n_events * sizeof(tm_event));
        s->events = more;
        s->cap_events = cap;
    }
    tm_event *e = &s->events[s->n_events++];
    e->time_ns = time_real_ns();
    e->name = arena_strdup(s, name, strlen(name));
    uint32_t n = 0;
    while (kv && kv[2 * n] && kv[2 * n + 1] && n < TM_MAX_ATTRIBUTES)
        n++;
    e->attrs = n ? arena_alloc(s, n * sizeof(tm_kv)) : NULL;
    for (uint32_t i = 0; i < n; i++) {
        size_t len = strlen(kv[2 * i + 1]);
        e->attrs[i] = (tm_kv){.key = kv[2 * i], /* a string literal */
                              .type = TM_STR,
                              .len = (uint32_t)len,
                              .v.s = arena_strdup(s, kv[2 * i + 1], len)};
    }
    e->n_attrs = n;
}

void tm_span_set_status(tm_span *s, tm_status_code code, const char *message)
{
    if (!s || s->ended)
        return;
    /* OK is final; ERROR may be downgraded only by OK (spec "Set Status"). */
    if (s->status == TM_STATUS_OK)
        return;
    s->status = (uint8_t)code;
    s->status_message =
        code == TM_STATUS_ERROR && message ? arena_strdup(s, message, strlen(message)) : NULL;
}

void tm_span_capture(tm_span *s)
{
    if (s && s->trace)
        s->trace->captured = true;
}

const tm_span_context *tm_span_context_get(const tm_span *s)
{
    return s ? &s->ctx : NULL;
}

static void hand_to_sink(tm_span *s)
{
    if (s->tracer->sink) {
        s->ctx.flags |= 1; /* exported spans are marked sampled for back ends */
        s->tracer->sink(s, s->tracer->sink_ud);
    } else {
        tm_span_release(s);
    }
}

static void decide(tm_tracer *t, tm_trace *tr)
{
    bool export = (tr->root->ctx.flags & 1) || tr->captured;
    tr->decision = export ? TM_EXPORT : TM_DROP;
    tr->root = NULL;
    for (uint32_t i = 0; i < tr->n_held; i++) {
        if (export)
            hand_to_sink(tr->held[i]);
        else
            tm_span_release(tr->held[i]);
    }
    tr->n_held = 0;
    (void)t;
}

void tm_span_end(tm_span *s)
{
    if (s && !s->ended)
        tm_span_end_at(s, time_real_ns());
}

void tm_span_end_at(tm_span *s, uint64_t end_unix_ns)
{
    if (!s || s->ended)
        return;
    s->ended = true;
    s->end_ns = end_unix_ns;
    tm_trace *tr = s->trace;
    tm_tracer *t = s->tracer;
    s->trace = NULL; /* the span may travel to another thread from here on */
    bool capture = s->status == TM_STATUS_ERROR && t->capture_errors;
    if (capture)
        tr->captured = true;
    tr->open--;

    if (tr->decision != TM_UNDECIDED) { /* a late child: follow the root */
        if (tr->decision == TM_EXPORT || capture)
            hand_to_sink(s);
        else
            tm_span_release(s);
    } else {
        bool is_root = tr->root == s;
        if (tr->n_held == tr->cap_held) {
            uint32_t cap = 2 * tr->cap_held;
            tm_span **held = xmalloc(cap * sizeof(*held));
            memcpy(held, tr->held, tr->n_held * sizeof(*held));
            if (tr->held != tr->held_inline)
                free(tr->held);
            tr->held = held;
            tr->cap_held = cap;
        }
        tr->held[tr->n_held++] = s;
        if (is_root)
            decide(t, tr);
    }
    if (tr->open == 0 && tr->decision != TM_UNDECIDED)
        trace_put(t, tr);
}
