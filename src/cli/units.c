/*
 * units.c - the human units chcpctl reads and writes: durations, byte sizes,
 * timestamps, ages, and enum values by short name ("running" for
 * VM_STATE_RUNNING).
 *
 * Sizes follow Cloud Hypervisor's command line: K, M, G and T are powers of
 * 1024 (KiB, MiB, ... are accepted too); "GB" and friends are refused rather
 * than guessed, since half the world reads them as powers of 1000.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define MAX_DURATION_MS (10ull * 365 * 24 * 3600 * 1000) /* ten years */

/* A decimal number with an optional fraction: "12", "1.5". */
static bool parse_decimal(const char **p, double *out)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return false;
    double v = 0;
    while (isdigit((unsigned char)*s))
        v = v * 10 + (*s++ - '0');
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return false;
        for (double scale = 0.1; isdigit((unsigned char)*s); scale /= 10)
            v += (*s++ - '0') * scale;
    }
    *p = s;
    *out = v;
    return true;
}

int units_parse_duration(const char *text, uint64_t *ms, chcp_error **err)
{
    const char *p = text;
    double total = 0;
    if (!*p)
        return error_set(err, CHCP_INVALID_ARGUMENT, "empty duration");
    while (*p) {
        double v;
        if (!parse_decimal(&p, &v))
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "invalid duration '%s' (examples: 90s, 1m30s, 500ms, 2h)", text);
        double unit;
        if (!*p && p != text && total == 0)
            unit = 1000; /* a bare number: seconds */
        else if (str_has_prefix(p, "ms"))
            unit = 1, p += 2;
        else if (*p == 's')
            unit = 1000, p++;
        else if (*p == 'm')
            unit = 60000, p++;
        else if (*p == 'h')
            unit = 3600000, p++;
        else
            return error_set(err, CHCP_INVALID_ARGUMENT,
                             "invalid duration '%s' (units: ms, s, m, h)", text);
        total += v * unit;
        if (total > (double)MAX_DURATION_MS)
            return error_set(err, CHCP_INVALID_ARGUMENT, "duration '%s' is too long", text);
    }
    *ms = (uint64_t)llround(total);
    return 0;
}

int units_parse_size(const char *text, uint64_t *bytes, chcp_error **err)
{
    static const struct {
        const char *suffix;
        int shift;
    } units[] = {
        {"", 0},     {"B", 0},  {"K", 10},   {"KiB", 10}, {"M", 20}, {"MiB", 20}, {"G", 30},
        {"GiB", 30}, {"T", 40}, {"TiB", 40}, {"k", 10},   {"m", 20}, {"g", 30},   {"t", 40},
    };
    const char *p = text;
    double v;
    if (!parse_decimal(&p, &v))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "invalid size '%s' (examples: 512M, 1G, 1073741824)", text);
    for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
        if (strcmp(p, units[i].suffix) != 0)
            continue;
        double b = v * (double)(1ull << units[i].shift);
        if (b >= 18446744073709549568.0)
            return error_set(err, CHCP_INVALID_ARGUMENT, "size '%s' is too large", text);
        if (b != floor(b))
            return error_set(err, CHCP_INVALID_ARGUMENT, "size '%s' is not a whole number of bytes",
                             text);
        *bytes = (uint64_t)b;
        return 0;
    }
    if (strlen(p) == 2 && strchr("KMGTkmgt", p[0]) && (p[1] == 'B' || p[1] == 'b'))
        return error_set(err, CHCP_INVALID_ARGUMENT,
                         "size '%s': write %c or %ciB (powers of 1024), not %s", text,
                         toupper((unsigned char)p[0]), toupper((unsigned char)p[0]), p);
    return error_set(err, CHCP_INVALID_ARGUMENT, "invalid size '%s' (units: K, M, G, T)", text);
}

void units_format_size(chcp_buf *out, uint64_t bytes)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    double v = (double)bytes;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    if (v == floor(v))
        buf_printf(out, "%.0f %s", v, names[i]);
    else
        buf_printf(out, "%.1f %s", v, names[i]);
}

void units_format_time(chcp_buf *out, const Google__Protobuf__Timestamp *ts)
{
    if (!ts) {
        buf_append_str(out, "-");
        return;
    }
    time_t t = (time_t)ts->seconds;
    struct tm tm;
    char text[64];
    if (!gmtime_r(&t, &tm) || strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        buf_append_str(out, "?");
        return;
    }
    buf_append_str(out, text);
}

void units_format_age(chcp_buf *out, const Google__Protobuf__Timestamp *ts)
{
    if (!ts) {
        buf_append_str(out, "-");
        return;
    }
    int64_t now = (int64_t)(time_real_ns() / 1000000000);
    int64_t age = now - ts->seconds;
    if (age < 0)
        age = 0;
    if (age < 120)
        buf_printf(out, "%llds", (long long)age);
    else if (age < 2 * 3600)
        buf_printf(out, "%lldm", (long long)(age / 60));
    else if (age < 48 * 3600)
        buf_printf(out, "%lldh", (long long)(age / 3600));
    else
        buf_printf(out, "%lldd", (long long)(age / 86400));
}

/* ---- enums by short name ---------------------------------------------------------- */

/* Length of the prefix all value names share, cut after its last '_'
 * ("VM_STATE_" for VmState). */
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *d)
{
    if (d->n_values == 0)
        return 0;
    const char *first = d->values[0].name;
    size_t len = strlen(first);
    for (unsigned i = 1; i < d->n_values; i++) {
        size_t k = 0;
        while (k < len && first[k] == d->values[i].name[k])
            k++;
        len = k;
    }
    while (len > 0 && first[len - 1] != '_')
        len--;
    return len;
}

const char *units_enum_short(const ProtobufCEnumDescriptor *d, int value, char *buf, size_t len)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v) {
        snprintf(buf, len, "%d", value);
        return buf;
    }
    const char *s = v->name + enum_prefix_len(d);
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++)
        buf[i] = s[i] == '_' ? '-' : (char)tolower((unsigned char)s[i]);
    buf[i] = '\0';
    return buf;
}

/* Find a value by full name or short name, any case, '-' or '_'. */
int units_enum_parse(const ProtobufCEnumDescriptor *d, const char *text, int *value)
{
    char norm[128];
    size_t n = strlen(text);
    if (n == 0 || n >= sizeof(norm))
        return -1;
    for (size_t i = 0; i <= n; i++)
        norm[i] = text[i] == '-' ? '_' : (char)toupper((unsigned char)text[i]);
    size_t plen = enum_prefix_len(d);
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *name = d->values[i].name;
        if (strcmp(name, norm) == 0 || strcmp(name + plen, norm) == 0) {
            *value = d->values[i].value;
            return 0;
        }
    }
    return -1;
}

const char *units_state_name(Cloudhypervisor__V1__VmState state)
{
    static char names[32][24];
    unsigned i = (unsigned)state < 32 ? (unsigned)state : 0;
    return units_enum_short(&cloudhypervisor__v1__vm_state__descriptor, (int)state, names[i],
                            sizeof(names[i]));
}

int units_parse_state(const char *text, Cloudhypervisor__V1__VmState *state)
{
    int v;
    if (units_enum_parse(&cloudhypervisor__v1__vm_state__descriptor, text, &v) < 0 || v == 0)
        return -1;
    *state = (Cloudhypervisor__V1__VmState)v;
    return 0;
}

int units_split_label(const char *text, char **owned, const char **key, const char **value,
                      chcp_error **err)
{
    const char *eq = strchr(text, '=');
    if (!eq || eq == text)
        return error_set(err, CHCP_INVALID_ARGUMENT, "label '%s': expected KEY=VALUE", text);
    *owned = xstrdup(text);
    (*owned)[eq - text] = '\0';
    *key = *owned;
    *value = *owned + (eq - text) + 1;
    return 0;
}
