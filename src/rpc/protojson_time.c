/*
 * protojson_time.c - the string forms of google.protobuf.Timestamp,
 * Duration and FieldMask paths, exactly as Go's protojson reads and writes
 * them (RFC 3339 with 0/3/6/9 fraction digits, "1.5s", lowerCamelCase paths).
 *
 * Dates are converted with the proleptic Gregorian day arithmetic below
 * rather than gmtime/timegm, which depend on time_t range and the C library.
 */
#include "rpc/protojson_internal.h"

#include <stdio.h>
#include <string.h>

#define TS_MIN_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TS_MAX_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */
#define DUR_MAX_SECONDS 315576000000LL
#define NANOS_MAX 999999999

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Write v as exactly `width` decimal digits (zero-padded); returns width.
 * Timestamps are on the response path, so no printf here. */
static int put_digits(char *out, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return width;
}

/* ".123", ".123456" or ".123456789": Go trims whole groups of three zeros. */
static int format_nanos(char *out, int32_t nanos)
{
    if (nanos == 0)
        return 0;
    out[0] = '.';
    if (nanos % 1000000 == 0)
        return 1 + put_digits(out + 1, (uint64_t)nanos / 1000000, 3);
    if (nanos % 1000 == 0)
        return 1 + put_digits(out + 1, (uint64_t)nanos / 1000, 6);
    return 1 + put_digits(out + 1, (uint64_t)nanos, 9);
}

bool pj_format_timestamp(char out[PJ_TIME_TEXT_MAX], int64_t secs, int32_t nanos)
{
    if (secs < TS_MIN_SECONDS || secs > TS_MAX_SECONDS || nanos < 0 || nanos > NANOS_MAX)
        return false;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    uint64_t rem = (uint64_t)(secs - days * 86400);
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    /* "YYYY-MM-DDTHH:MM:SS" */
    put_digits(out, (uint64_t)y, 4);
    out[4] = '-';
    put_digits(out + 5, m, 2);
    out[7] = '-';
    put_digits(out + 8, d, 2);
    out[10] = 'T';
    put_digits(out + 11, rem / 3600, 2);
    out[13] = ':';
    put_digits(out + 14, rem / 60 % 60, 2);
    out[16] = ':';
    put_digits(out + 17, rem % 60, 2);
    int n = 19 + format_nanos(out + 19, nanos);
    out[n] = 'Z';
    out[n + 1] = '\0';
    return true;
}

bool pj_format_duration(char out[PJ_TIME_TEXT_MAX], int64_t secs, int32_t nanos)
{
    if (secs < -DUR_MAX_SECONDS || secs > DUR_MAX_SECONDS || nanos < -NANOS_MAX ||
        nanos > NANOS_MAX || (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0))
        return false;
    int n = 0;
    if (secs < 0 || nanos < 0) {
        out[n++] = '-';
        secs = -secs;
        nanos = -nanos;
    }
    n += sprintf(out + n, "%lld", (long long)secs);
    n += format_nanos(out + n, nanos);
    out[n] = 's';
    out[n + 1] = '\0';
    return true;
}

/* Exactly `n` digits at s; value in *v. */
static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)", as Go's time.Parse
 * with RFC3339Nano reads it (quirks included), plus protojson's limit of 9
 * fraction digits. */
bool pj_parse_timestamp(const char *s, int64_t *secs, int32_t *nanos)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se;
    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap(y)) || h > 23 ||
        mi > 59 || se > 59)
        return false;
    const char *p = s + 19;
    int32_t ns = 0;
    if ((*p == '.' || *p == ',') && p[1] >= '0' && p[1] <= '9') {
        /* Go also takes ',' and then (its 9-digit check looks for '.')
         * truncates longer fractions. */
        bool comma = *p++ == ',';
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            if (++n > 9 && !comma)
                return false;
            if (n <= 9)
                ns = ns * 10 + (*p - '0');
            p++;
        }
        for (; n < 9; n++)
            ns *= 10;
    }
    int offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        /* Go's fallback parser allows offsets up to 24:60. */
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 24 || om > 60)
            return false;
        offset = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return false;
    }
    if (*p)
        return false;
    int64_t t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    t -= offset;
    if (t < TS_MIN_SECONDS || t > TS_MAX_SECONDS)
        return false;
    *secs = t;
    *nanos = ns;
    return true;
}

/* "[-+]int[.frac]s" with at most 9 fraction digits ("1s", "1.s", ".5s"). */
bool pj_parse_duration(const char *s, int64_t *secs, int32_t *nanos)
{
    size_t len = strlen(s);
    if (len < 2 || s[len - 1] != 's')
        return false;
    const char *p = s, *end = s + len - 1;
    bool neg = false;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if (p == end)
        return false;
    int64_t sec = 0;
    bool any_digit = false;
    if (*p == '0') {
        p++;
        any_digit = true;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (sec > (INT64_MAX - 9) / 10)
                return false;
            sec = sec * 10 + (*p++ - '0');
            any_digit = true;
        }
    }
    int32_t ns = 0;
    if (p < end) {
        if (*p != '.')
            return false;
        p++;
        int n = 0;
        while (p < end && *p >= '0' && *p <= '9' && n < 9) {
            ns = ns * 10 + (*p++ - '0');
            n++;
        }
        if (p != end)
            return false;
        for (; n < 9; n++)
            ns *= 10;
    } else if (!any_digit) {
        return false;
    }
    if (sec > DUR_MAX_SECONDS)
        return false;
    *secs = neg ? -sec : sec;
    *nanos = neg ? -ns : ns;
    return true;
}

/* A protobuf full name: identifiers [A-Za-z_][A-Za-z0-9_]* joined by '.'. */
static bool valid_full_name(const char *s)
{
    bool start = true;
    for (; *s; s++) {
        char c = *s;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (c == '.') {
            if (start)
                return false;
            start = true;
        } else if (alpha || (!start && c >= '0' && c <= '9')) {
            start = false;
        } else {
            return false;
        }
    }
    return !start;
}

static char *snake_case(const char *s, size_t len)
{
    chcp_buf b = CHCP_BUF_INIT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z') {
            buf_append_byte(&b, '_');
            buf_append_byte(&b, (uint8_t)(s[i] - 'A' + 'a'));
        } else {
            buf_append_byte(&b, (uint8_t)s[i]);
        }
    }
    return buf_steal_str(&b);
}

char *pj_field_path_to_json(const char *path)
{
    if (!valid_full_name(path))
        return NULL;
    chcp_buf b = CHCP_BUF_INIT;
    bool was_underscore = false;
    for (const char *p = path; *p; p++) {
        char c = *p;
        if (c != '_') {
            if (was_underscore && c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
            buf_append_byte(&b, (uint8_t)c);
        }
        was_underscore = *p == '_';
    }
    char *json = buf_steal_str(&b);
    /* Go refuses paths that would not read back the same ("foo_1", "fooBar"). */
    char *back = snake_case(json, strlen(json));
    bool same = strcmp(back, path) == 0;
    free(back);
    if (!same) {
        free(json);
        return NULL;
    }
    return json;
}

char *pj_field_path_from_json(const char *json_path, size_t len)
{
    if (memchr(json_path, '_', len))
        return NULL;
    char *path = snake_case(json_path, len);
    if (!valid_full_name(path)) {
        free(path);
        return NULL;
    }
    return path;
}
