/*
 * identity.c - who is at the other end of a connection: the refcounted
 * http_peer_identity a connection shares with its requests (a request may
 * outlive its connection, so each holds a reference), and the Unix-socket
 * peer's credentials.
 *
 * SO_PEERCRED is what the kernel recorded when the peer called connect(), so
 * a process cannot claim another uid; SO_PEERGROUPS adds its supplementary
 * groups (Linux 4.13), which allow-lists by group need. The TLS half (client
 * certificate names) is filled in by tls.c once the handshake is done.
 */
#include "transport/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

conn_identity *conn_identity_new(void)
{
    conn_identity *id = xcalloc(1, sizeof(*id));
    id->refs = 1;
    return id;
}

conn_identity *conn_identity_ref(conn_identity *id)
{
    if (id)
        id->refs++;
    return id;
}

void conn_identity_unref(conn_identity *id)
{
    if (!id || --id->refs > 0)
        return;
    for (size_t i = 0; i < id->n_strings; i++)
        free(id->strings[i]);
    free(id->strings);
    free(id->sans);
    free(id->groups);
    free(id);
}

const char *conn_identity_keep(conn_identity *id, char *s)
{
    id->strings = xrealloc(id->strings, (id->n_strings + 1) * sizeof(*id->strings));
    id->strings[id->n_strings++] = s;
    return s;
}

bool identity_text_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

void conn_identity_add_san(conn_identity *id, const char *prefix, const char *value, size_t len)
{
    if (!identity_text_ok(value, len))
        return;
    char *s = xasprintf("%s%.*s", prefix, (int)len, value);
    id->sans = xrealloc(id->sans, (id->pub.n_sans + 1) * sizeof(*id->sans));
    id->sans[id->pub.n_sans++] = conn_identity_keep(id, s);
    id->pub.sans = id->sans;
}

void conn_identity_read_cred(conn_identity *id, int fd)
{
    id->pub.unix_peer = true;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
        return; /* has_cred stays false: the peer is nobody in particular */
    id->pub.has_cred = true;
    id->pub.uid = cred.uid;
    id->pub.gid = cred.gid;
    id->pub.pid = cred.pid;
    /* Supplementary groups; ERANGE says how many bytes they need. */
    gid_t small[32];
    gid_t *groups = small;
    len = sizeof(small);
    cleanup_free gid_t *big = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
        if (errno != ERANGE || len == 0 || len > 65536 * sizeof(gid_t))
            return;
        big = xmalloc(len);
        groups = big;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
            return;
    }
    size_t n = len / sizeof(gid_t);
    if (n == 0)
        return;
    id->groups = xcalloc(n, sizeof(*id->groups));
    for (size_t i = 0; i < n; i++)
        id->groups[i] = groups[i];
    id->pub.groups = id->groups;
    id->pub.n_groups = n;
}
