/*
 * protojson_scan.c - the pre-pass that keeps JSON numbers exact.
 *
 * jansson stores integers as long long and everything else as double, so a
 * uint64 above INT64_MAX is rejected, "-0" loses its sign and a real loses
 * its digits (which matters for float32 and for integers written "1.0e3").
 * Before parsing, every such number token is rewritten into a JSON string
 * whose first character is a control character that appears nowhere in the
 * input (the decoder then treats those strings as number text). Inputs with
 * only ordinary integers, the common case, are parsed as they are.
 */
#include "rpc/protojson_internal.h"

#include <string.h>

static bool is_num_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Must this number token be protected from jansson's conversion? */
static bool needs_protection(const char *tok, size_t len)
{
    if (!pj_is_json_number(tok, len))
        return false; /* invalid: leave it for jansson to reject */
    if (memchr(tok, '.', len) || memchr(tok, 'e', len) || memchr(tok, 'E', len))
        return true;
    if (len == 2 && tok[0] == '-' && tok[1] == '0')
        return true;
    int64_t v;
    return !pj_number_to_i64(tok, len, INT64_MIN, INT64_MAX, &v);
}

/* Count (and with `rewrite`, protect into `out`) the number tokens outside
 * strings that jansson would not keep exactly. */
static size_t scan_numbers(const char *s, size_t len, bool rewrite, chcp_buf *out, char marker)
{
    size_t count = 0, copied = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9'))
            continue;
        size_t end = i;
        while (end < len && is_num_char(s[end]))
            end++;
        /* A number followed by ':' sits where a key belongs: invalid JSON
         * that must stay invalid rather than become a string key. */
        size_t next = end;
        while (next < len &&
               (s[next] == ' ' || s[next] == '\t' || s[next] == '\n' || s[next] == '\r'))
            next++;
        bool key_position = next < len && s[next] == ':';
        if (!key_position && needs_protection(s + i, end - i)) {
            count++;
            if (rewrite) {
                buf_append(out, s + copied, i - copied);
                buf_printf(out, "\"\\u%04x", (unsigned)(unsigned char)marker);
                buf_append(out, s + i, end - i);
                buf_append_byte(out, '"');
                copied = end;
            }
        }
        i = end - 1;
    }
    if (rewrite)
        buf_append(out, s + copied, len - copied);
    return count;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A control character no "\u00XX" escape in the input produces (raw control
 * characters are not valid inside JSON strings, and the short escapes \b \t
 * \n \f \r are avoided). */
static char pick_marker(const char *s, size_t len)
{
    bool used[32] = {false};
    used[0] = used['\b'] = used['\t'] = used['\n'] = used['\f'] = used['\r'] = true;
    for (size_t i = 0; i + 5 < len; i++) {
        if (s[i] == '\\' && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0') {
            int hi = hex_value(s[i + 4]), lo = hex_value(s[i + 5]);
            if (hi >= 0 && lo >= 0 && hi * 16 + lo < 32)
                used[hi * 16 + lo] = true;
        }
    }
    for (int c = 1; c < 32; c++)
        if (!used[c])
            return (char)c;
    return 0;
}

char *pjd_protect_numbers(const char *json, size_t len, size_t *out_len, char *marker)
{
    *marker = 0;
    *out_len = len;
    if (scan_numbers(json, len, false, NULL, 0) == 0)
        return NULL;
    char m = pick_marker(json, len);
    if (!m)
        return PJD_NO_MARKER;
    chcp_buf out = CHCP_BUF_INIT;
    buf_reserve(&out, len + 64);
    scan_numbers(json, len, true, &out, m);
    *marker = m;
    *out_len = out.len;
    return buf_steal_str(&out);
}

size_t protojson_count_values(const char *json, size_t len, size_t max)
{
    /* Every value but the root is introduced by '[', '{' or ',' outside a
     * string, so counting those (plus the root) bounds the values (object
     * members count once: key and value). Stops once past max. */
    size_t count = 1;
    bool in_string = false;
    for (size_t i = 0; i < len && count <= max; i++) {
        char c = json[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{' || c == ',') {
            count++;
        }
    }
    return count;
}
