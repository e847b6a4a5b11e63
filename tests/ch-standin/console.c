/*
 * console.c - CH's console devices (vmm/src/console_devices.rs) as far as a
 * control plane sees them: where guest text goes and which files/sockets
 * exist when.
 *
 * pre_create_console_devices() runs at vm.create, again at vm.boot after a
 * vm.shutdown, and at every reboot:
 *   - File mode: File::create, i.e. the file is (re)created and truncated;
 *   - Tty mode: guest text goes to CH's stdout;
 *   - serial Socket mode: a listening Unix socket is bound at the path (bind
 *     fails if the path exists); clients that connect get the serial output;
 *     the socket file is removed when the booted VM goes away (CH's
 *     SerialManager drop), but not when a never-booted config is deleted;
 *   - console (virtio) Socket mode is refused: "No socket option support for
 *     console device";
 *   - Pty mode: a pty pair is opened and its path written into the config's
 *     `file` field (vm.info shows it), guest text goes to the pty;
 *   - Off/Null: nothing.
 */
#include "standin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS 8

static int listen_fd = -1;
static int pty_fds[2] = {-1, -1}; /* console, serial: pty main sides */
static char *listen_path;
static int clients[MAX_CLIENTS];
static int nclients;

static const char *mode_of(const char *key, const char *def)
{
    const char *m = json_string_value(json_object_get(json_object_get(g_vm.config, key), "mode"));
    return m ? m : def;
}

static const char *path_of(const char *key, const char *field)
{
    return json_string_value(json_object_get(json_object_get(g_vm.config, key), field));
}

static int create_error(si_reply *r, const char *ctx, const char *what, int errnum)
{
    char *os = errnum ? si_os_error(errnum) : NULL;
    si_reply_error(r, SI_E_OTHER, ctx, "Error creating console devices", what, os, NULL);
    free(os);
    return -1;
}

static int bind_serial_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* create_pty(): the main side stays with the VMM, the sub side's path is
 * written into the config so clients find it in vm.info. */
static int open_pty(const char *key, int *out)
{
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    const char *name = NULL;
    if (grantpt(fd) < 0 || unlockpt(fd) < 0 || !(name = ptsname(fd))) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    json_object_set_new(json_object_get(g_vm.config, key), "file", json_string(name));
    *out = fd;
    return 0;
}

int si_console_create(si_reply *r, const char *ctx)
{
    si_console_release(false);
    const char *keys[] = {"console", "serial", "debug_console"};
    const char *defs[] = {"Tty", "Null", "Off"};
    for (int i = 0; i < 3; i++) {
        const char *mode = mode_of(keys[i], defs[i]);
        const char *file = path_of(keys[i], "file");
        if (!strcmp(mode, "Pty") && i < 2) {
            if (open_pty(keys[i], &pty_fds[i]) < 0)
                return create_error(r, ctx, "Error creating console device", errno);
        } else if (!strcmp(mode, "File") && file) {
            int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
            if (fd < 0)
                return create_error(r, ctx, "Error creating console device", errno);
            close(fd);
        } else if (!strcmp(mode, "Socket") && i != 1) {
            return create_error(r, ctx, "No socket option support for console device", 0);
        }
    }
    const char *sock = path_of("serial", "socket");
    if (!strcmp(mode_of("serial", "Null"), "Socket") && sock) {
        listen_fd = bind_serial_socket(sock);
        if (listen_fd < 0)
            return create_error(r, ctx, "Error creating console device", errno);
        listen_path = si_xstrdup(sock);
        si_vmm_watch_fd(listen_fd, true);
    }
    g_vm.console_ready = true;
    return 0;
}

void si_console_release(bool remove_socket)
{
    for (int i = 0; i < 2; i++) {
        if (pty_fds[i] >= 0)
            close(pty_fds[i]);
        pty_fds[i] = -1;
    }
    for (int i = 0; i < nclients; i++)
        close(clients[i]);
    nclients = 0;
    if (listen_fd >= 0) {
        si_vmm_watch_fd(listen_fd, false);
        close(listen_fd);
        listen_fd = -1;
        if (remove_socket)
            unlink(listen_path);
    }
    free(listen_path);
    listen_path = NULL;
    g_vm.console_ready = false;
}

int si_console_listen_fd(void)
{
    return listen_fd;
}

void si_console_accept(void)
{
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (nclients == MAX_CLIENTS) {
        close(fd);
        return;
    }
    clients[nclients++] = fd;
}

void si_console_out(const char *text)
{
    /* Clients that connected before the output was produced get it, even
     * if the control loop has not looked at the listener yet. */
    for (int i = 0; listen_fd >= 0 && i < MAX_CLIENTS; i++) {
        int before = nclients;
        si_console_accept();
        if (nclients == before)
            break;
    }
    const char *keys[] = {"console", "serial"};
    const char *defs[] = {"Tty", "Null"};
    for (int i = 0; i < 2; i++) {
        const char *mode = mode_of(keys[i], defs[i]);
        const char *file = path_of(keys[i], "file");
        int fd = -1;
        if (!strcmp(mode, "Pty") && pty_fds[i] >= 0) {
            ssize_t n = write(pty_fds[i], text, strlen(text)); /* non-blocking */
            (void)n;
            continue;
        }
        if (!strcmp(mode, "Tty"))
            fd = STDOUT_FILENO;
        else if (!strcmp(mode, "File") && file)
            fd = open(file, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = write(fd, text, strlen(text));
        (void)n;
        if (fd != STDOUT_FILENO)
            close(fd);
    }
    for (int i = 0; i < nclients;) {
        if (send(clients[i], text, strlen(text), MSG_NOSIGNAL) < 0 && errno != EAGAIN) {
            close(clients[i]);
            clients[i] = clients[--nclients];
            continue;
        }
        i++;
    }
}
