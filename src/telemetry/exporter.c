/*
 * exporter.c - OTLP/HTTP POSTs on the event loop, with the retry rules of the
 * OTLP specification.
 *
 * libcurl's multi interface does the HTTP; its sockets and timer are driven
 * by libuv (uv_poll_t per socket, one uv_timer_t), so an export never blocks
 * the loop. Retryable outcomes - 429, 502, 503, 504, or no response at all -
 * are retried with exponential back-off and jitter, honouring Retry-After,
 * until the export timeout; anything else is final. The caller is told the
 * outcome once per payload.
 */
#include "telemetry/exporter.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <zlib.h>

/*
 * libcurl is loaded with dlopen() the first time an exporter is created, so a
 * daemon with telemetry off (the default) never maps libcurl and the two
 * dozen libraries it pulls in (TLS, LDAP, Kerberos, ...): several MiB of RSS
 * for a feature it does not use.
 */
static struct {
    CURLcode (*global_init)(long flags);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
    CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev, int *running);
    CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
    CURLMcode (*multi_cleanup)(CURLM *m);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *e, CURLoption opt, ...);
    CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *e);
    const char *(*easy_strerror)(CURLcode c);
    time_t (*getdate)(const char *s, const time_t *unused);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
} cu;
static char curl_load_error[256];

static void curl_load(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(curl_load_error, sizeof(curl_load_error), "cannot load libcurl: %s", dlerror());
        return;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&cu.global_init, "curl_global_init"},
        {(void **)&cu.multi_init, "curl_multi_init"},
        {(void **)&cu.multi_setopt, "curl_multi_setopt"},
        {(void **)&cu.multi_socket_action, "curl_multi_socket_action"},
        {(void **)&cu.multi_assign, "curl_multi_assign"},
        {(void **)&cu.multi_info_read, "curl_multi_info_read"},
        {(void **)&cu.multi_add_handle, "curl_multi_add_handle"},
        {(void **)&cu.multi_remove_handle, "curl_multi_remove_handle"},
        {(void **)&cu.multi_cleanup, "curl_multi_cleanup"},
        {(void **)&cu.easy_init, "curl_easy_init"},
        {(void **)&cu.easy_setopt, "curl_easy_setopt"},
        {(void **)&cu.easy_getinfo, "curl_easy_getinfo"},
        {(void **)&cu.easy_cleanup, "curl_easy_cleanup"},
        {(void **)&cu.easy_strerror, "curl_easy_strerror"},
        {(void **)&cu.getdate, "curl_getdate"},
        {(void **)&cu.slist_append, "curl_slist_append"},
        {(void **)&cu.slist_free_all, "curl_slist_free_all"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(syms); i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(curl_load_error, sizeof(curl_load_error), "libcurl lacks %s", syms[i].name);
            return;
        }
    }
    cu.global_init(CURL_GLOBAL_DEFAULT);
}

struct tm_exporter {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    tm_exporter_config cfg;
    char user_agent[96];
    struct export_job *jobs;
    size_t in_flight;
    bool closing;
    bool cleaning; /* inside curl_multi_cleanup */
    void (*closed)(void *ud);
    void *closed_ud;
    unsigned open_handles; /* uv handles still to close */
};

typedef struct export_job {
    tm_exporter *ex;
    CURL *easy;
    char *url;
    struct curl_slist *headers; /* the target's, plus ours */
    uint64_t attempt_timeout_ms;
    chcp_buf body;
    chcp_buf response;
    char error[CURL_ERROR_SIZE];
    uint64_t deadline_ns;
    unsigned attempt;
    double retry_after_s; /* from the last response, or -1 */
    uv_timer_t retry_timer;
    tm_export_done_fn done;
    void *ud;
    struct export_job *prev, *next; /* the exporter's live jobs */
} export_job;

typedef struct socket_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    tm_exporter *ex;
} socket_ctx;

static void check_done(tm_exporter *ex);

/* ---- libcurl <-> libuv glue ----------------------------------------------- */

static void on_poll(uv_poll_t *poll, int status, int events)
{
    socket_ctx *sc = poll->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    cu.multi_socket_action(sc->ex->multi, sc->fd, flags, &running);
    check_done(sc->ex);
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    tm_exporter *ex = userp;
    socket_ctx *sc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sc) {
            uv_poll_stop(&sc->poll);
            uv_close((uv_handle_t *)&sc->poll, on_poll_closed);
            if (!ex->cleaning)
                cu.multi_assign(ex->multi, fd, NULL);
        }
        return 0;
    }
    if (!sc) {
        sc = xcalloc(1, sizeof(*sc));
        sc->fd = fd;
        sc->ex = ex;
        uv_poll_init_socket(ex->loop, &sc->poll, fd);
        sc->poll.data = sc;
        cu.multi_assign(ex->multi, fd, sc);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&sc->poll, events, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    tm_exporter *ex = t->data;
    int running;
    cu.multi_socket_action(ex->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(ex);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    tm_exporter *ex = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&ex->timer);
    else
        uv_timer_start(&ex->timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- jobs ----------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    export_job *job = ud;
    if (job->response.len + size * n <= 4u << 20) /* cap response parsing at 4 MiB */
        buf_append(&job->response, data, size * n);
    return size * n;
}

/* Retry-After: delta-seconds or an HTTP-date. */
static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    export_job *job = ud;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        char value[128];
        size_t vlen = len - (sizeof(name) - 1);
        if (vlen >= sizeof(value))
            vlen = sizeof(value) - 1;
        memcpy(value, data + sizeof(name) - 1, vlen);
        value[vlen] = '\0';
        char *end;
        double secs = strtod(value, &end);
        if (end != value && secs >= 0) {
            job->retry_after_s = secs;
        } else {
            time_t when = cu.getdate(value, NULL);
            if (when > 0)
                job->retry_after_s =
                    difftime(when, time(NULL)) > 0 ? difftime(when, time(NULL)) : 0;
        }
    }
    return len;
}

static void job_closed(uv_handle_t *h)
{
    export_job *job = h->data;
    tm_exporter *ex = job->ex;
    free(job->url);
    if (job->headers)
        cu.slist_free_all(job->headers);
    buf_free(&job->body);
    buf_free(&job->response);
    free(job);
    ex->open_handles--;
    if (ex->closing && ex->open_handles == 0 && ex->closed)
        ex->closed(ex->closed_ud);
}

static void job_finish(export_job *job, bool ok, const char *message)
{
    tm_exporter *ex = job->ex;
    ex->in_flight--;
    if (job->prev)
        job->prev->next = job->next;
    else
        ex->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    if (job->done)
        job->done(ok, message, job->ud);
    uv_close((uv_handle_t *)&job->retry_timer, job_closed);
}

static void job_start(export_job *job)
{
    tm_exporter *ex = job->ex;
    job->attempt++;
    job->easy = cu.easy_init();
    job->retry_after_s = -1;
    buf_reset(&job->response);
    job->error[0] = '\0';
    CURL *e = job->easy;
    cu.easy_setopt(e, CURLOPT_URL, job->url);
    cu.easy_setopt(e, CURLOPT_POST, 1L);
    cu.easy_setopt(e, CURLOPT_POSTFIELDS, job->body.data);
    cu.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body.len);
    cu.easy_setopt(e, CURLOPT_HTTPHEADER, job->headers);
    cu.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)job->attempt_timeout_ms);
    cu.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    cu.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    cu.easy_setopt(e, CURLOPT_WRITEDATA, job);
    cu.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    cu.easy_setopt(e, CURLOPT_HEADERDATA, job);
    cu.easy_setopt(e, CURLOPT_ERRORBUFFER, job->error);
    cu.easy_setopt(e, CURLOPT_PRIVATE, job);
    cu.multi_add_handle(ex->multi, e);
}

static void on_retry_timer(uv_timer_t *t)
{
    job_start(t->data);
}

static double backoff_seconds(const tm_exporter *ex, unsigned attempt)
{
    double d = (double)ex->cfg.initial_backoff_ms / 1000.0;
    double max = (double)ex->cfg.max_backoff_ms / 1000.0;
    for (unsigned i = 1; i < attempt && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)time_mono_ns();
    return d * (0.5 + (double)r / 4294967296.0 * 0.5); /* jitter: 50-100% */
}

static void schedule_retry(export_job *job, const char *why)
{
    tm_exporter *ex = job->ex;
    double delay = job->retry_after_s >= 0 ? job->retry_after_s : backoff_seconds(ex, job->attempt);
    uint64_t at = time_mono_ns() + (uint64_t)(delay * 1e9);
    if (ex->closing || at >= job->deadline_ns) {
        char msg[600];
        snprintf(msg, sizeof(msg), "%s; gave up after %u attempt(s)", why, job->attempt);
        job_finish(job, false, msg);
        return;
    }
    uv_timer_start(&job->retry_timer, on_retry_timer, (uint64_t)(delay * 1000), 0);
}

static bool retryable_status(long status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

/* A transfer ended: success, a final failure, or a retry. */
static void transfer_done(export_job *job, CURLcode result)
{
    long status = 0;
    cu.easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &status);
    cu.multi_remove_handle(job->ex->multi, job->easy);
    cu.easy_cleanup(job->easy);
    job->easy = NULL;

    char why[400];
    if (result != CURLE_OK) {
        snprintf(why, sizeof(why), "POST %s: %s", job->url,
                 job->error[0] ? job->error : cu.easy_strerror(result));
        schedule_retry(job, why);
    } else if (status >= 200 && status < 300) {
        job_finish(job, true, NULL);
    } else if (retryable_status(status)) {
        snprintf(why, sizeof(why), "POST %s: HTTP %ld", job->url, status);
        schedule_retry(job, why);
    } else {
        snprintf(why, sizeof(why), "POST %s: HTTP %ld (not retried)", job->url, status);
        job_finish(job, false, why);
    }
}

static void check_done(tm_exporter *ex)
{
    CURLMsg *msg;
    int left;
    while ((msg = cu.multi_info_read(ex->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        export_job *job = NULL;
        cu.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
        transfer_done(job, msg->data.result);
    }
}

/* ---- public --------------------------------------------------------------- */

tm_exporter *tm_exporter_new(uv_loop_t *loop, const tm_exporter_config *cfg)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, curl_load);
    tm_exporter *ex = xcalloc(1, sizeof(*ex));
    ex->loop = loop;
    ex->cfg = *cfg;
    if (!ex->cfg.export_timeout_ms)
        ex->cfg.export_timeout_ms = 30000;
    if (!ex->cfg.initial_backoff_ms)
        ex->cfg.initial_backoff_ms = 1000;
    if (!ex->cfg.max_backoff_ms)
        ex->cfg.max_backoff_ms = 5000;
    uv_timer_init(loop, &ex->timer);
    ex->timer.data = ex;
    ex->open_handles = 1;
    if (curl_load_error[0]) {
        /* Every export fails with this message (health shows it). */
        log_error("telemetry export disabled: %s", curl_load_error);
        return ex;
    }
    ex->multi = cu.multi_init();
    cu.multi_setopt(ex->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    cu.multi_setopt(ex->multi, CURLMOPT_SOCKETDATA, ex);
    cu.multi_setopt(ex->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    cu.multi_setopt(ex->multi, CURLMOPT_TIMERDATA, ex);
    snprintf(ex->user_agent, sizeof(ex->user_agent), "User-Agent: chcp-otlp-exporter-c/%s",
             CHCP_VERSION);
    return ex;
}

/* gzip (RFC 1952) of `in`, for Content-Encoding: gzip. Level 1: OTLP
 * payloads repeat themselves enough that more effort buys little. */
static void gzip_body(chcp_buf *in)
{
    z_stream z = {0};
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort(); /* only fails without memory */
    chcp_buf out = CHCP_BUF_INIT;
    buf_reserve(&out, deflateBound(&z, in->len));
    z.next_in = in->data;
    z.avail_in = (uInt)in->len;
    z.next_out = out.data;
    z.avail_out = (uInt)out.cap;
    int rc = deflate(&z, Z_FINISH);
    if (rc != Z_STREAM_END)
        abort(); /* deflateBound() is an upper bound: cannot happen */
    out.len = z.total_out;
    deflateEnd(&z);
    buf_free(in);
    *in = out;
}

static struct curl_slist *job_headers(const tm_exporter *ex, const tm_export_target *to)
{
    struct curl_slist *h = cu.slist_append(NULL, "Content-Type: application/x-protobuf");
    h = cu.slist_append(h, "Expect:");
    if (to->gzip)
        h = cu.slist_append(h, "Content-Encoding: gzip");
    bool own_agent = false;
    for (const char *const *kv = to->headers; kv && kv[0] && kv[1]; kv += 2) {
        cleanup_free char *line = xasprintf("%s: %s", kv[0], kv[1]);
        h = cu.slist_append(h, line);
        own_agent = own_agent || strcasecmp(kv[0], "user-agent") == 0;
    }
    if (!own_agent)
        h = cu.slist_append(h, ex->user_agent);
    return h;
}

void tm_exporter_post(tm_exporter *ex, const tm_export_target *to, chcp_buf *body,
                      tm_export_done_fn done, void *ud)
{
    export_job *job = xcalloc(1, sizeof(*job));
    job->ex = ex;
    job->url = xstrdup(to->url);
    job->attempt_timeout_ms = to->timeout_ms ? to->timeout_ms : 10000;
    if (to->gzip)
        gzip_body(body);
    job->body = *body;
    *body = (chcp_buf)CHCP_BUF_INIT;
    if (ex->multi)
        job->headers = job_headers(ex, to);
    job->done = done;
    job->ud = ud;
    job->deadline_ns = time_mono_ns() + ex->cfg.export_timeout_ms * 1000000ull;
    uv_timer_init(ex->loop, &job->retry_timer);
    job->retry_timer.data = job;
    ex->open_handles++;
    ex->in_flight++;
    job->next = ex->jobs;
    if (ex->jobs)
        ex->jobs->prev = job;
    ex->jobs = job;
    if (ex->closing || !ex->multi) {
        job_finish(job, false, ex->closing ? "exporter is closing" : curl_load_error);
        return;
    }
    job_start(job);
}

size_t tm_exporter_in_flight(const tm_exporter *ex)
{
    return ex->in_flight;
}

static void exporter_timer_closed(uv_handle_t *h)
{
    tm_exporter *ex = h->data;
    ex->open_handles--;
    if (ex->open_handles == 0 && ex->closed)
        ex->closed(ex->closed_ud);
}

void tm_exporter_close(tm_exporter *ex, void (*closed)(void *ud), void *ud)
{
    ex->closing = true;
    ex->closed = closed;
    ex->closed_ud = ud;
    /* Abort what is still running or waiting to retry: those payloads are
     * lost, and their owners are told so. */
    while (ex->jobs) {
        export_job *job = ex->jobs;
        if (job->easy) {
            cu.multi_remove_handle(ex->multi, job->easy);
            cu.easy_cleanup(job->easy);
            job->easy = NULL;
        }
        uv_timer_stop(&job->retry_timer);
        job_finish(job, false, "exporter closed");
    }
    /* Kept-alive connections go now, on the loop that polls them (their
     * uv_poll handles close on it). */
    if (ex->multi) {
        ex->cleaning = true;
        cu.multi_cleanup(ex->multi);
        ex->multi = NULL;
    }
    uv_close((uv_handle_t *)&ex->timer, exporter_timer_closed);
}

void tm_exporter_free(tm_exporter *ex)
{
    if (!ex)
        return;
    if (ex->multi)
        cu.multi_cleanup(ex->multi);
    free(ex);
}
