/*
 * ch_test_util.h - helpers shared by the test_ch_*.c unit tests: running a
 * libuv loop until a condition holds (bounded in time), temporary
 * directories, and a scripted fake Cloud Hypervisor API server that runs in
 * its own thread on a real Unix socket.
 */
#ifndef CH_TEST_UTIL_H
#define CH_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static void tu_wake(uv_timer_t *t)
{
}

/* Run the loop until *flag becomes true or ms pass; returns *flag. */
static inline bool tu_run_until(uv_loop_t *loop, volatile bool *flag, uint64_t ms)
{
    uv_timer_t wake;
    uv_timer_init(loop, &wake);
    uv_timer_start(&wake, tu_wake, 5, 5);
    uint64_t end = uv_now(loop) + ms;
    while (!*flag && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

/* Let pending closes finish; fails the test if handles stay open. */
static inline int tu_drain_loop(uv_loop_t *loop)
{
    for (int i = 0; i < 200 && uv_loop_alive(loop); i++)
        uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
    return uv_loop_close(loop);
}

static inline char *tu_mkdtemp(void)
{
    char tmpl[] = "/tmp/chcp-ch-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static inline void tu_rmrf(const char *dir)
{
    /* Our own flat test directories only: unlink every entry, then the dir. */
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            unlinkat(dirfd(d), de->d_name, 0);
    if (d)
        closedir(d);
    rmdir(dir);
}

/* ---- scripted fake API server --------------------------------------------------- */

#define TU_MAX_STEPS 16

typedef struct tu_step {
    const char *chunks[6]; /* response pieces, written with a pause between */
    bool close_after;      /* close the connection after the response */
    bool no_answer;        /* read the request, answer nothing, wait for the client to go */
    bool early_answer;     /* answer after the headers, then drain until the client goes */
} tu_step;

typedef struct tu_server {
    int lfd;
    char path[108];
    pthread_t th;
    tu_step steps[TU_MAX_STEPS];
    size_t n_steps;
    /* recorded by the server thread */
    char reqs[TU_MAX_STEPS][8192];
    size_t n_reqs;
    int fds[TU_MAX_STEPS][4]; /* fds received with each request (-1 = none) */
    int n_fds[TU_MAX_STEPS];
    int connections;
} tu_server;

static int tu_read_request(int fd, char *out, size_t cap, int *fds, int *n_fds, bool headers_only)
{
    size_t len = 0;
    *n_fds = 0;
    for (;;) {
        char cbuf[CMSG_SPACE(sizeof(int) * 4)];
        struct iovec iov = {out + len, cap - 1 - len};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n <= 0)
            return -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < k && *n_fds < 4; i++)
                    memcpy(&fds[(*n_fds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            }
        }
        len += (size_t)n;
        out[len] = 0;
        char *hend = strstr(out, "\r\n\r\n");
        if (!hend)
            continue;
        if (headers_only)
            return 0;
        const char *cl = strcasestr(out, "content-length:");
        size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;
        if (len >= (size_t)(hend + 4 - out) + want)
            return 0;
    }
}

static void *tu_server_main(void *arg)
{
    tu_server *s = arg;
    int cfd = -1;
    for (size_t i = 0; i < s->n_steps; i++) {
        if (cfd < 0) {
            struct pollfd p = {.fd = s->lfd, .events = POLLIN};
            if (poll(&p, 1, 5000) <= 0)
                break;
            cfd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (cfd < 0)
                break;
            struct timeval tv = {.tv_sec = 5};
            setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            s->connections++;
        }
        const tu_step *st = &s->steps[i];
        if (tu_read_request(cfd, s->reqs[i], sizeof(s->reqs[i]), s->fds[i], &s->n_fds[i],
                            st->early_answer) < 0)
            break;
        s->n_reqs++;
        if (st->early_answer) {
            ssize_t w = write(cfd, st->chunks[0], strlen(st->chunks[0]));
            (void)w;
        }
        if (st->no_answer || st->early_answer) {
            char b[256];
            while (read(cfd, b, sizeof(b)) > 0) /* until the client gives up */
                ;
            close(cfd);
            cfd = -1;
            continue;
        }
        for (int k = 0; k < 6 && st->chunks[k]; k++) {
            if (k)
                usleep(20000);
            ssize_t w = write(cfd, st->chunks[k], strlen(st->chunks[k]));
            (void)w;
        }
        if (st->close_after) {
            close(cfd);
            cfd = -1;
        }
    }
    if (cfd >= 0)
        close(cfd);
    return NULL;
}

static inline void tu_server_start(tu_server *s, const char *dir)
{
    snprintf(s->path, sizeof(s->path), "%s/fake.sock", dir);
    for (int i = 0; i < TU_MAX_STEPS; i++)
        s->n_fds[i] = 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, s->path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(s->path);
    if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->lfd, 8) < 0)
        abort();
    pthread_create(&s->th, NULL, tu_server_main, s);
}

static inline void tu_server_stop(tu_server *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    unlink(s->path);
    for (int i = 0; i < TU_MAX_STEPS; i++)
        for (int k = 0; k < s->n_fds[i]; k++)
            close(s->fds[i][k]);
}

#endif
