/*
 * util.c - time, small string helpers and base64 (standard and URL-safe),
 * which HTTP metadata (-bin headers), Connect GET and protobuf JSON all need.
 */
#include "core.h"

#include <string.h>
#include <strings.h>
#include <time.h>

uint64_t time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t time_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool str_ieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

bool str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_to_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (d > max || v > (max - d) / 10) /* v * 10 + d > max, without overflow */
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

void base64_encode(chcp_buf *out, const uint8_t *data, size_t len, bool url, bool pad)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *alpha = url ? safe : std;
    buf_reserve(out, (len + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        char q[4] = {alpha[v >> 18], alpha[(v >> 12) & 63], alpha[(v >> 6) & 63], alpha[v & 63]};
        buf_append(out, q, 4);
    }
    size_t rest = len - i;
    if (rest) {
        uint32_t v = (uint32_t)data[i] << 16 | (rest == 2 ? (uint32_t)data[i + 1] << 8 : 0);
        buf_append_byte(out, (uint8_t)alpha[v >> 18]);
        buf_append_byte(out, (uint8_t)alpha[(v >> 12) & 63]);
        if (rest == 2)
            buf_append_byte(out, (uint8_t)alpha[(v >> 6) & 63]);
        if (pad)
            buf_append(out, "==", 3 - rest);
    }
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int base64_decode(chcp_buf *out, const char *text, size_t len)
{
    while (len > 0 && text[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    buf_reserve(out, len / 4 * 3 + 3);
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)text[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_append_byte(out, (uint8_t)(acc >> bits));
        }
    }
    /* Non-zero leftover bits (a non-canonical last character) are accepted,
     * as Go's lenient decoders used by connect-go accept them. */
    return 0;
}
