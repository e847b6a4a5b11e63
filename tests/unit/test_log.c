/*
 * test_log.c - src/core/log.c: JSON lines, the journald detection
 * (JOURNAL_STREAM against the device:inode of an fd) and the mapping of a
 * record to journal fields (PRIORITY per level, VM_ID, TRACE_ID, CODE_*,
 * upper-cased extra fields that never override the standard ones).
 *
 * A real journald receiving these fields is tested in tests/packaging (the
 * packaged unit under systemd, where one can be booted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

static bool has_field(char **f, size_t n, const char *field)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i], field) == 0)
            return true;
    return false;
}

static size_t count_prefix(char **f, size_t n, const char *prefix)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += str_has_prefix(f[i], prefix);
    return c;
}

static void test_journal_stream_matches(void **state)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct stat st;
    assert_int_equal(fstat(sv[0], &st), 0);
    char good[64], other_ino[64], other_dev[64];
    snprintf(good, sizeof(good), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    snprintf(other_ino, sizeof(other_ino), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    snprintf(other_dev, sizeof(other_dev), "%llu:%llu", (unsigned long long)st.st_dev + 1,
             (unsigned long long)st.st_ino);
    assert_true(log_journal_stream_matches(good, sv[0]));
    /* The peer end is another inode: systemd's stream is the one we hold. */
    assert_false(log_journal_stream_matches(good, sv[1]));
    assert_false(log_journal_stream_matches(other_ino, sv[0]));
    assert_false(log_journal_stream_matches(other_dev, sv[0]));
    assert_false(log_journal_stream_matches(NULL, sv[0]));
    assert_false(log_journal_stream_matches("", sv[0]));
    assert_false(log_journal_stream_matches("12", sv[0]));
    assert_false(log_journal_stream_matches("a:b", sv[0]));
    cleanup_free char *trailing = xasprintf("%s:1", good);
    assert_false(log_journal_stream_matches(trailing, sv[0]));
    cleanup_free char *spaced = xasprintf("%s ", good);
    assert_false(log_journal_stream_matches(spaced, sv[0]));
    assert_false(log_journal_stream_matches(good, 999)); /* not an open fd */
    close(sv[0]);
    close(sv[1]);
}

static void test_journal_fields(void **state)
{
    const char *kv[] = {"port",  "8080", "git_rev",   "abc",           "message", "not the message",
                        "2fast", "x",    "state-dir", "/var/lib/chcp", NULL};
    log_record r = {.level = LOG_WARN,
                    .file = "src/vm/manager.c",
                    .line = 42,
                    .func = "vm_boot",
                    .vm_id = "web-1",
                    .trace_id = "0af7651916cd43dd8448eb211c80319c",
                    .span_id = "b7ad6b7169203331",
                    .kv = kv,
                    .msg = "booting\nsecond line"};
    char **f;
    size_t n = log_journal_fields(&r, &f);
    assert_true(has_field(f, n, "MESSAGE=booting\nsecond line"));
    assert_true(has_field(f, n, "PRIORITY=4"));
    assert_true(has_field(f, n, "SYSLOG_IDENTIFIER=chcp-api"));
    assert_true(has_field(f, n, "CODE_FILE=src/vm/manager.c"));
    assert_true(has_field(f, n, "CODE_LINE=42"));
    assert_true(has_field(f, n, "CODE_FUNC=vm_boot"));
    assert_true(has_field(f, n, "VM_ID=web-1"));
    assert_true(has_field(f, n, "TRACE_ID=0af7651916cd43dd8448eb211c80319c"));
    assert_true(has_field(f, n, "SPAN_ID=b7ad6b7169203331"));
    assert_true(has_field(f, n, "PORT=8080"));
    assert_true(has_field(f, n, "GIT_REV=abc"));
    assert_true(has_field(f, n, "STATE_DIR=/var/lib/chcp"));
    /* A key that would override a standard field, or is not a valid name
     * on its own, keeps a CHCP_ prefix. */
    assert_true(has_field(f, n, "CHCP_MESSAGE=not the message"));
    assert_true(has_field(f, n, "CHCP_2FAST=x"));
    assert_int_equal(count_prefix(f, n, "MESSAGE="), 1);
    assert_int_equal(n, 14);
    log_fields_free(f, n);

    /* Priorities per level; no optional fields when there is nothing. */
    static const struct {
        log_level level;
        const char *priority;
    } prio[] = {{LOG_DEBUG, "PRIORITY=7"},
                {LOG_INFO, "PRIORITY=6"},
                {LOG_WARN, "PRIORITY=4"},
                {LOG_ERROR, "PRIORITY=3"}};
    for (size_t i = 0; i < ARRAY_SIZE(prio); i++) {
        log_record plain = {.level = prio[i].level, .msg = "m"};
        n = log_journal_fields(&plain, &f);
        assert_int_equal(n, 3);
        assert_true(has_field(f, n, prio[i].priority));
        assert_int_equal(count_prefix(f, n, "VM_ID="), 0);
        assert_int_equal(count_prefix(f, n, "CODE_"), 0);
        log_fields_free(f, n);
    }
}

static void test_json_line(void **state)
{
    const char *kv[] = {"port", "8080", "odd key\"", "quote\" and \\ and \x01", NULL};
    log_record r = {.level = LOG_ERROR,
                    .file = "src/main.c",
                    .line = 1,
                    .func = "main",
                    .vm_id = "db-2",
                    .trace_id = "0af7651916cd43dd8448eb211c80319c",
                    .span_id = "b7ad6b7169203331",
                    .kv = kv,
                    .msg = "line\nbreak\t\"quoted\""};
    chcp_buf b = CHCP_BUF_INIT;
    log_format_json(&r, &b);
    assert_true(b.len > 0 && b.data[b.len - 1] == '\n');
    assert_null(memchr(b.data, '\n', b.len - 1)); /* one line */
    json_error_t jerr;
    json_t *o = json_loadb((const char *)b.data, b.len, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "line\nbreak\t\"quoted\"");
    assert_string_equal(json_string_value(json_object_get(o, "vm_id")), "db-2");
    assert_string_equal(json_string_value(json_object_get(o, "trace_id")),
                        "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(json_string_value(json_object_get(o, "span_id")), "b7ad6b7169203331");
    assert_string_equal(json_string_value(json_object_get(o, "port")), "8080");
    assert_string_equal(json_string_value(json_object_get(o, "odd key\"")),
                        "quote\" and \\ and \x01");
    assert_non_null(json_object_get(o, "time"));
    json_decref(o);
    buf_free(&b);
}

/* Not started by systemd: JSON lines, whatever JOURNAL_STREAM claims. */
static void test_init_detects_no_journal(void **state)
{
    setenv("JOURNAL_STREAM", "1:2", 1);
    log_init();
    assert_false(log_to_journal());
    unsetenv("JOURNAL_STREAM");
    log_init();
    assert_false(log_to_journal());
}

/* JOURNAL_STREAM naming our stderr switches to journal entries. */
static void test_init_detects_journal_on_stderr(void **state)
{
    struct stat st;
    assert_int_equal(fstat(STDERR_FILENO, &st), 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    log_init();
    assert_true(log_to_journal());
    unsetenv("JOURNAL_STREAM");
    log_init();
    assert_false(log_to_journal());
}

/* Run log_console with stderr and stdout on pipes; optionally with
 * JOURNAL_STREAM naming the stderr pipe. Returns what each received. */
static void console_capture(bool journal, log_level level, const char *msg, char *err_out,
                            char *out_out, size_t len)
{
    int ep[2], op[2];
    assert_int_equal(pipe(ep), 0);
    assert_int_equal(pipe(op), 0);
    fflush(stdout);
    fflush(stderr);
    int saved_err = dup(STDERR_FILENO), saved_out = dup(STDOUT_FILENO);
    dup2(ep[1], STDERR_FILENO);
    dup2(op[1], STDOUT_FILENO);
    close(ep[1]);
    close(op[1]);
    if (journal) {
        struct stat st;
        assert_int_equal(fstat(STDERR_FILENO, &st), 0);
        char js[64];
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", js, 1);
    }
    log_init();
    log_console(level, "%s", msg);
    unsetenv("JOURNAL_STREAM");
    log_init();
    fflush(stdout);
    fflush(stderr);
    dup2(saved_err, STDERR_FILENO);
    dup2(saved_out, STDOUT_FILENO);
    close(saved_err);
    close(saved_out);
    ssize_t n = read(ep[0], err_out, len - 1);
    err_out[n > 0 ? n : 0] = '\0';
    n = read(op[0], out_out, len - 1);
    out_out[n > 0 ? n : 0] = '\0';
    close(ep[0]);
    close(op[0]);
}

static void test_console(void **state)
{
    char err[4096], out[4096];
    /* A terminal or a file: a plain line on stderr, the JSON record on stdout. */
    console_capture(false, LOG_ERROR, "cannot start: x", err, out, sizeof(err));
    assert_string_equal(err, "chcp-api: cannot start: x\n");
    assert_non_null(strstr(out, "\"level\":\"error\",\"msg\":\"cannot start: x\""));
    console_capture(false, LOG_WARN, "unknown variable", err, out, sizeof(err));
    assert_string_equal(err, "chcp-api: warning: unknown variable\n");
    /* The journal: one line on the stream with the priority as a prefix
     * (the unit stays attached even if the daemon exits at once). */
    console_capture(true, LOG_ERROR, "cannot start: x", err, out, sizeof(err));
    assert_string_equal(err, "<3>cannot start: x\n");
    assert_string_equal(out, "");
    console_capture(true, LOG_WARN, "unknown variable", err, out, sizeof(err));
    assert_string_equal(err, "<4>unknown variable\n");
    /* Below the level: nothing anywhere. */
    log_set_level(LOG_ERROR);
    console_capture(true, LOG_WARN, "quiet", err, out, sizeof(err));
    log_set_level(LOG_INFO);
    assert_string_equal(err, "");
    assert_string_equal(out, "");
}

static void test_levels(void **state)
{
    log_set_level(LOG_WARN);
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    log_set_level(LOG_INFO);
    assert_int_equal(log_level_from_name("WARN"), LOG_WARN);
    assert_int_equal(log_level_from_name("debug"), LOG_DEBUG);
    assert_int_equal(log_level_from_name("verbose"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal_stream_matches),
        cmocka_unit_test(test_journal_fields),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_init_detects_no_journal),
        cmocka_unit_test(test_init_detects_journal_on_stderr),
        cmocka_unit_test(test_console),
        cmocka_unit_test(test_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
