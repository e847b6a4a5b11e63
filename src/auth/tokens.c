/*
 * tokens.c - bearer tokens: the file of hashed tokens and the check of a
 * presented one.
 *
 * The file holds one token per line, "<name> sha256:<64 hex digits>", with
 * blank lines and '#' comments. The daemon never stores a token, only its
 * SHA-256. Why not a salted, slow hash (PBKDF2, scrypt, argon2): those
 * protect low-entropy secrets that people choose, against an attacker who
 * stole the file and guesses. chcp's tokens are machine-generated 256-bit
 * random strings (docs/security.md shows how; shorter presented tokens are
 * refused outright), which no guessing reaches, salted or not; and a slow
 * hash would cost milliseconds of the event loop for every request, which
 * an unauthenticated client could ask for at will. SHA-256 of the presented
 * token is compared with every entry using CRYPTO_memcmp, without stopping
 * at a match, so timing tells nothing about which entry or how much matched.
 */
#include "auth/auth_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>

void sha256(const void *data, size_t len, uint8_t out[AUTH_HASH_LEN])
{
    unsigned int n = AUTH_HASH_LEN;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        abort(); /* SHA-256 always exists in libcrypto */
}

char *auth_token_hash(const char *token)
{
    uint8_t h[AUTH_HASH_LEN];
    sha256(token, strlen(token), h);
    chcp_buf b = CHCP_BUF_INIT;
    buf_append_str(&b, "sha256:");
    for (size_t i = 0; i < sizeof(h); i++)
        buf_printf(&b, "%02x", h[i]);
    return buf_steal_str(&b);
}

int auth_read_file(const char *path, const char *what, chcp_buf *out, chcp_error **err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "%s %s", what, path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "%s %s", what, path);
    if (!S_ISREG(st.st_mode))
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s %s: not a regular file", what, path);
    /* Whoever may change it decides who gets in (like sshd's StrictModes). */
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s %s: writable by group or others (mode %04o); chmod go-w it", what,
                         path, (unsigned)(st.st_mode & 07777));
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "%s %s: owned by uid %u, not by root or this daemon's user", what, path,
                         (unsigned)st.st_uid);
    if ((size_t)st.st_size > AUTH_FILE_MAX)
        return error_set(err, CHCP_INVALID_ARGUMENT, "%s %s: larger than %zu bytes", what, path,
                         AUTH_FILE_MAX);
    buf_reset(out);
    for (;;) {
        buf_reserve(out, 4096);
        ssize_t n = read(fd, out->data + out->len, 4096);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return error_set_errno(err, CHCP_INVALID_ARGUMENT, errno, "%s %s", what, path);
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len > AUTH_FILE_MAX)
            return error_set(err, CHCP_INVALID_ARGUMENT, "%s %s: larger than %zu bytes", what, path,
                             AUTH_FILE_MAX);
    }
    buf_append_byte(out, 0);
    out->len--;
    return 0;
}

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len > AUTH_TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@';
        if (!ok)
            return false;
    }
    return true;
}

static bool parse_hash(const char *s, size_t len, uint8_t out[AUTH_HASH_LEN])
{
    if (len != 7 + 2 * AUTH_HASH_LEN || strncmp(s, "sha256:", 7) != 0)
        return false;
    s += 7;
    for (size_t i = 0; i < AUTH_HASH_LEN; i++) {
        int hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
        int lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* The next whitespace-separated field of a line. */
static const char *field(const char **p, const char *end, size_t *len)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    const char *start = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    *len = (size_t)(*p - start);
    return *len ? start : NULL;
}

static int parse_line(const char *path, unsigned lineno, const char *p, const char *end,
                      auth_tokens *t, chcp_error **err)
{
    size_t name_len, hash_len, extra_len;
    const char *name = field(&p, end, &name_len);
    if (!name || *name == '#')
        return 0;
    const char *hash = field(&p, end, &hash_len);
    uint8_t h[AUTH_HASH_LEN];
    if (!name_ok(name, name_len))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "tokens file %s, line %u: the name must be 1-64 characters of "
                         "A-Z a-z 0-9 . _ - @",
                         path, lineno);
    if (!hash || !parse_hash(hash, hash_len, h))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "tokens file %s, line %u: expected \"<name> sha256:<64 hex digits>\"",
                         path, lineno);
    if (field(&p, end, &extra_len))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "tokens file %s, line %u: unexpected text after the hash", path, lineno);
    for (size_t i = 0; i < t->n; i++) {
        if (strlen(t->v[i].name) == name_len && memcmp(t->v[i].name, name, name_len) == 0)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "tokens file %s, line %u: the name '%.*s' is used twice", path, lineno,
                             (int)name_len, name);
        if (memcmp(t->v[i].hash, h, sizeof(h)) == 0)
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "tokens file %s, line %u: the same token as '%s'", path, lineno,
                             t->v[i].name);
    }
    t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
    auth_token *tok = &t->v[t->n++];
    memcpy(tok->name, name, name_len);
    tok->name[name_len] = '\0';
    memcpy(tok->hash, h, sizeof(h));
    return 0;
}

int tokens_load(const char *path, auth_tokens *out, chcp_error **err)
{
    *out = (auth_tokens){0};
    chcp_buf text = CHCP_BUF_INIT;
    if (auth_read_file(path, "tokens file", &text, err) < 0) {
        buf_free(&text);
        return -1;
    }
    const char *p = (const char *)text.data, *end = p + text.len;
    int rc = 0;
    for (unsigned lineno = 1; p && p < end && rc == 0; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        if (eol > p && eol[-1] == '\r')
            eol--;
        rc = parse_line(path, lineno, p, eol, out, err);
        p = nl ? nl + 1 : end;
    }
    buf_free(&text);
    if (rc < 0)
        tokens_free(out);
    return rc;
}

void tokens_free(auth_tokens *t)
{
    if (t->v)
        OPENSSL_cleanse(t->v, t->n * sizeof(*t->v));
    free(t->v);
    *t = (auth_tokens){0};
}

const auth_token *tokens_match(const auth_tokens *t, const char *token, size_t len)
{
    if (len < AUTH_TOKEN_MIN_LEN || len > AUTH_TOKEN_MAX_LEN)
        return NULL;
    uint8_t h[AUTH_HASH_LEN];
    sha256(token, len, h);
    const auth_token *found = NULL;
    for (size_t i = 0; i < t->n; i++) {
        /* Every entry is compared; the branch only records the result. */
        bool equal = CRYPTO_memcmp(t->v[i].hash, h, sizeof(h)) == 0;
        found = equal ? &t->v[i] : found;
    }
    OPENSSL_cleanse(h, sizeof(h));
    return found;
}
