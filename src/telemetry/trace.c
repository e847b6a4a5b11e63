/*
 * trace.c - spans, W3C trace context and sampling.
 *
 * Sampling is ParentBased(TraceIdRatioBased(r)), decided at span start as the
 * spec says, but every span is *recorded*: operators want every failed call,
 * and an error is only known when a span ends. So the export decision is
 * taken when the local root span ends: export the whole local trace if it was
 * sampled, or captured: any of its spans ended with status ERROR (unless
 * that is switched off), or tm_span_capture() was called on one of them (the
 * daemon does so for every RPC that did not end OK). Spans of an
 * undecided trace are held by their root until then; a child that ends after
 * its root (an asynchronous VMM call outliving its request) follows the
 * decision already made. The sampled flag we propagate downstream stays what
 * the sampler said; force-exported spans carry the sampled bit in their OTLP
 * flags so back ends keep them.
 */
#include "telemetry/span_internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

struct tm_tracer {
    double ratio;
    bool capture_errors;
    tm_span_sink_fn sink;
    void *sink_ud;
};

tm_tracer *tm_tracer_new(double sampling_ratio, tm_span_sink_fn sink, void *sink_ud)
{
    tm_tracer *t = xcalloc(1, sizeof(*t));
    t->ratio = sampling_ratio;
    t->capture_errors = true;
    t->sink = sink;
    t->sink_ud = sink_ud;
    return t;
}

void tm_tracer_set_capture_errors(tm_tracer *t, bool on)
{
    if (t)
        t->capture_errors = on;
}

void tm_tracer_free(tm_tracer *t)
{
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
    if (tracestate && strlen(tracestate) < sizeof(out->tracestate))
        strcpy(out->tracestate, tracestate);
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
 * span. The loop thread is the only user (no locking).
 */
static uint64_t rng_state[4];
static bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
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

static void random_bytes(uint8_t *b, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            memcpy(b + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (all_zero(b, n));
}

/* ---- spans ---------------------------------------------------------------- */

static tm_span *span_new(tm_tracer *t, const char *name, tm_span_kind kind)
{
    tm_span *s = xcalloc(1, sizeof(*s));
    s->tracer = t;
    size_t len = strlen(name);
    s->name = len < sizeof(s->name_buf) ? memcpy(s->name_buf, name, len + 1) : xstrdup(name);
    s->attrs = s->inline_attrs;
    s->cap_attrs = ARRAY_SIZE(s->inline_attrs);
    s->kind = kind;
    s->start_ns = time_real_ns();
    random_bytes(s->ctx.span_id, 8);
    return s;
}

tm_span *tm_span_start(tm_tracer *t, const char *name, tm_span_kind kind,
                       const tm_span_context *parent)
{
    if (!t)
        return NULL;
    tm_span *s = span_new(t, name, kind);
    if (parent) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent_span_id, parent->span_id, 8);
        s->has_parent = true;
        s->parent_remote = parent->remote;
        strcpy(s->ctx.tracestate, parent->tracestate);
        s->ctx.flags = parent->flags & 1; /* ParentBased: follow the parent */
    } else {
        random_bytes(s->ctx.trace_id, 16);
        s->ctx.flags = tm_tracer_should_sample(t->ratio, s->ctx.trace_id) ? 1 : 0;
    }
    s->root = s;
    s->refs = 1;
    s->open_spans = 1;
    return s;
}

tm_span *tm_span_start_child(tm_span *parent, const char *name, tm_span_kind kind)
{
    if (!parent)
        return NULL;
    tm_span *s = span_new(parent->tracer, name, kind);
    memcpy(s->ctx.trace_id, parent->ctx.trace_id, 16);
    memcpy(s->parent_span_id, parent->ctx.span_id, 8);
    s->has_parent = true;
    s->ctx.flags = parent->ctx.flags;
    strcpy(s->ctx.tracestate, parent->ctx.tracestate);
    s->root = parent->root;
    s->root->refs++;
    s->root->open_spans++;
    return s;
}

static tm_kv *attr_slot(tm_span *s, const char *key)
{
    for (size_t i = 0; i < s->n_attrs; i++) {
        if (strcmp(s->attrs[i].key, key) == 0) {
            if (s->attrs[i].type == TM_STR && !s->attrs[i].borrowed)
                free(s->attrs[i].v.s);
            s->attrs[i].borrowed = false;
            return &s->attrs[i];
        }
    }
    if (s->n_attrs >= TM_MAX_ATTRIBUTES) {
        s->dropped_attrs++;
        return NULL;
    }
    if (s->n_attrs == s->cap_attrs) {
        s->cap_attrs *= 2;
        if (s->attrs == s->inline_attrs) {
            s->attrs = xmalloc(s->cap_attrs * sizeof(*s->attrs));
            memcpy(s->attrs, s->inline_attrs, sizeof(s->inline_attrs));
        } else {
            s->attrs = xrealloc(s->attrs, s->cap_attrs * sizeof(*s->attrs));
        }
    }
    tm_kv *kv = &s->attrs[s->n_attrs++];
    kv->borrowed = false;
    kv->key = key; /* a string literal (see telemetry.h) */
    return kv;
}

void tm_span_set_str(tm_span *s, const char *key, const char *value)
{
    tm_kv *kv = s && !s->ended ? attr_slot(s, key) : NULL;
    if (kv) {
        kv->type = TM_STR;
        kv->v.s = xstrdup(value ? value : "");
    }
}

void tm_span_set_static_str(tm_span *s, const char *key, const char *value)
{
    tm_kv *kv = s && !s->ended ? attr_slot(s, key) : NULL;
    if (kv) {
        kv->type = TM_STR;
        kv->v.s = (char *)value;
        kv->borrowed = true;
    }
}

void tm_span_set_int(tm_span *s, const char *key, int64_t value)
{
    tm_kv *kv = s && !s->ended ? attr_slot(s, key) : NULL;
    if (kv) {
        kv->type = TM_INT;
        kv->v.i = value;
    }
}

void tm_span_set_double(tm_span *s, const char *key, double value)
{
    tm_kv *kv = s && !s->ended ? attr_slot(s, key) : NULL;
    if (kv) {
        kv->type = TM_DOUBLE;
        kv->v.d = value;
    }
}

void tm_span_set_bool(tm_span *s, const char *key, bool value)
{
    tm_kv *kv = s && !s->ended ? attr_slot(s, key) : NULL;
    if (kv) {
        kv->type = TM_BOOL;
        kv->v.b = value;
    }
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
        s->cap_events = s->cap_events ? s->cap_events * 2 : 4;
        s->events = xrealloc(s->events, s->cap_events * sizeof(*s->events));
    }
    tm_event *e = &s->events[s->n_events++];
    memset(e, 0, sizeof(*e));
    e->time_ns = time_real_ns();
    e->name = xstrdup(name);
    size_t n = 0;
    while (kv && kv[2 * n] && kv[2 * n + 1] && n < TM_MAX_ATTRIBUTES)
        n++;
    e->attrs = n ? xcalloc(n, sizeof(*e->attrs)) : NULL;
    for (size_t i = 0; i < n; i++) {
        e->attrs[i].key = kv[2 * i]; /* a string literal */
        e->attrs[i].type = TM_STR;
        e->attrs[i].v.s = xstrdup(kv[2 * i + 1]);
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
    s->status = code;
    free(s->status_message);
    s->status_message = code == TM_STATUS_ERROR && message ? xstrdup(message) : NULL;
}

void tm_span_capture(tm_span *s)
{
    if (s)
        s->root->captured = true;
}

const tm_span_context *tm_span_context_get(const tm_span *s)
{
    return s ? &s->ctx : NULL;
}

static void kv_clear(tm_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (kv[i].type == TM_STR && !kv[i].borrowed)
            free(kv[i].v.s);
}

static void span_free(tm_span *s)
{
    kv_clear(s->attrs, s->n_attrs);
    if (s->attrs != s->inline_attrs)
        free(s->attrs);
    for (size_t i = 0; i < s->n_events; i++) {
        free(s->events[i].name);
        kv_clear(s->events[i].attrs, s->events[i].n_attrs);
        free(s->events[i].attrs);
    }
    free(s->events);
    if (s->name != s->name_buf)
        free(s->name);
    free(s->status_message);
    free(s->held);
    free(s);
}

/* Drop one reference to a root; the root's memory goes with the last one. */
static void root_unref(tm_span *root)
{
    if (--root->refs == 0)
        span_free(root);
}

void tm_span_release(tm_span *s)
{
    if (!s)
        return;
    tm_span *root = s->root;
    if (s == root) {
        root_unref(root);
        return;
    }
    span_free(s);
    root_unref(root);
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

static void decide(tm_span *root)
{
    bool export = (root->ctx.flags & 1) || root->captured;
    root->decision = export ? TM_EXPORT : TM_DROP;
    /* Releasing spans may free the root: hold it until the loop is done. */
    root->refs++;
    tm_span **held = root->held;
    size_t n = root->n_held;
    root->held = NULL;
    root->n_held = root->cap_held = 0;
    for (size_t i = 0; i < n; i++) {
        if (export)
            hand_to_sink(held[i]);
        else
            tm_span_release(held[i]);
    }
    free(held);
    root_unref(root);
}

void tm_span_end(tm_span *s)
{
    if (!s || s->ended)
        return;
    s->ended = true;
    s->end_ns = time_real_ns();
    tm_span *root = s->root;
    bool capture = s->status == TM_STATUS_ERROR && s->tracer->capture_errors;
    if (capture)
        root->captured = true;
    root->open_spans--;

    if (root->decision != TM_UNDECIDED) { /* a late child: follow the root */
        if (root->decision == TM_EXPORT || capture)
            hand_to_sink(s);
        else
            tm_span_release(s);
        return;
    }
    if (root->n_held == root->cap_held) {
        root->cap_held = root->cap_held ? root->cap_held * 2 : 4;
        root->held = xrealloc(root->held, root->cap_held * sizeof(*root->held));
    }
    root->held[root->n_held++] = s;
    if (s == root)
        decide(root);
}
