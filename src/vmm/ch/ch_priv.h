/*
 * ch_priv.h - internals shared by the files of the Cloud Hypervisor back end
 * (not an interface: other modules use ch.h only).
 *
 * One `struct ch_vmm` ties together three parts that each live in their own
 * file: the API client (ch_client.c), the process supervision
 * (ch_process.c / ch_vmm.c) and the event-file follower (ch_events.c).
 */
#ifndef CHCP_VMM_CH_PRIV_H
#define CHCP_VMM_CH_PRIV_H

#include <http_parser.h>

#include "vmm/ch/ch.h"

#define CH_MAX_FDS 16
/* CH accepts payloads up to 4 MiB; answers are far smaller. Anything bigger is
 * not a VMM talking. */
#define CH_MAX_RESPONSE_BODY (8u << 20)
/* After EOF in mid-call, wait this long for the process exit to be seen so the
 * error can carry the exit reason rather than a bare "connection closed". */
#define CH_EOF_GRACE_MS 200u

typedef struct ch_call {
    struct ch_call *next;
    char *endpoint;
    chcp_buf req; /* the whole rendered request */
    size_t sent;
    int fds[CH_MAX_FDS];
    size_t nfds; /* still owned by us until the first sendmsg succeeds */
    uint64_t timeout_ms;
    bool is_vmm_shutdown;
    bool eof; /* connection ended before a full answer (see CH_EOF_GRACE_MS) */
    ch_response_fn cb;
    void *ud;
} ch_call;

/* One connection to the API socket; freed (and its fd closed) in the poll
 * handle's close callback, so a discarded connection never outlives safely. */
typedef struct ch_conn {
    uv_poll_t poll;
    int fd;
    struct ch_vmm *vmm;
    int events; /* currently polled UV_READABLE/UV_WRITABLE */
} ch_conn;

typedef struct ch_client {
    char *path;
    ch_conn *conn;
    uv_timer_t timer; /* per-call timeout of the head call */
    ch_call *head, *tail;
    bool active; /* head is being sent / awaited */
    http_parser parser;
    chcp_buf body;
    bool complete;
} ch_client;

typedef struct ch_follower {
    int fd; /* events.json, O_RDONLY */
    char *path;
    uv_fs_event_t fsev;
    bool fsev_started;
    ch_event_parser parser;
    uint64_t read_offset; /* next byte to read from the file */
} ch_follower;

typedef enum ch_mode { CH_MODE_SPAWNED, CH_MODE_ADOPTED, CH_MODE_ATTACHED } ch_mode;

struct ch_vmm {
    uv_loop_t *loop;
    ch_mode mode;
    char *vm_id;
    char *dir;
    ch_vmm_callbacks cbs;
    void *ud;
    int refs;         /* owner + callbacks in progress */
    int handles_open; /* libuv handles not yet closed */
    bool closing;     /* ch_vmm_free() was called */

    ch_client client;

    /* process */
    pid_t pid;
    uint64_t start_time;
    int pidfd;
    uv_poll_t pidfd_poll;
    bool alive;
    bool exit_seen;
    bool has_pidfd_poll;
    bool ready_reported;
    uint64_t ready_timeout_ms;
    uv_timer_t stop_timer;
    int stop_step; /* 0 none, 1 shutdown sent, 2 SIGTERM sent, 3 SIGKILL sent */
    uint64_t stop_grace_ms;

    ch_follower events;
    bool has_events;
};

/* ---- ch_vmm.c: reference counting around user callbacks ---------------------- */
void ch_vmm_ref(ch_vmm *vmm);
/* Returns true when the vmm is still usable afterwards (not closing). */
bool ch_vmm_unref(ch_vmm *vmm);
void ch_vmm_handle_closed(uv_handle_t *h); /* uv_close_cb; h->data is the vmm */
void ch_vmm_handle_done(ch_vmm *vmm);      /* one handle fewer open */
/* EOF was seen with a supervised process: check at once whether it exited. */
void ch_vmm_check_exit(ch_vmm *vmm);

/* ---- ch_client.c ------------------------------------------------------------ */
void ch_client_init(ch_vmm *vmm, const char *path);
/* Fail every queued call with `code`/`msg` and drop the connection. */
void ch_client_fail_all(ch_vmm *vmm, chcp_code code, const char *msg);
void ch_client_close(ch_vmm *vmm); /* handles only; calls must be failed first */
int ch_client_enqueue(ch_vmm *vmm, ch_call *call, chcp_error **err);
ch_call *ch_call_new(const char *endpoint, const char *json_body, const int *fds, size_t nfds,
                     uint64_t timeout_ms, ch_response_fn cb, void *ud, chcp_error **err);
void ch_call_free(ch_call *call);

/* ---- ch_process.c ----------------------------------------------------------- */
typedef struct ch_child {
    pid_t pid;
    int pidfd;
    uint64_t start_time;
    uint64_t event_offset; /* size of events.json before the spawn */
    char *socket_path;
    char *events_path;
} ch_child;

int ch_process_spawn(const ch_spawn_opts *opts, ch_child *out, chcp_error **err);
/* Reap an own child through its pidfd (non-blocking); fills status/signal/
 * reason. Returns 0 when reaped, 1 when still running, -1 on error. */
int ch_process_reap(int pidfd, int *status, int *sig, char *reason, size_t reason_len);
/* The exit status of a process that is not our child (adopted after a
 * restart): from its pidfd once reaped (Linux >= 6.15), or from /proc while
 * it is a zombie. Returns 0 when known, -1 (status -1, signal 0) when not. */
int ch_process_foreign_exit(pid_t pid, int pidfd, uint64_t start_time, int *status, int *sig,
                            char *reason, size_t reason_len);
/* Append " (stderr: ...)"-style tails of the per-VM logs to `b`. */
void ch_process_log_tails(const char *dir, chcp_buf *b);
/* Signal the process (and for SIGKILL its group) only if pid + start time
 * still match. Returns 0 when sent, -1 when the process is gone/different. */
int ch_process_signal(pid_t pid, int pidfd, uint64_t start_time, int sig, bool group);
char *ch_path_join(const char *dir, const char *name, chcp_error **err);

/* ---- ch_events.c ------------------------------------------------------------ */
int ch_follower_start(ch_vmm *vmm, const char *path, uint64_t offset, chcp_error **err);
/* Read everything new and deliver it. Returns false when the vmm closed in a
 * callback. */
bool ch_follower_drain(ch_vmm *vmm);
void ch_follower_close(ch_vmm *vmm);

#endif
