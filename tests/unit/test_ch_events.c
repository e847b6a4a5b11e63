/*
 * test_ch_events.c - the event-monitor stream splitter: CH's pretty-printed
 * events separated by blank lines, fed in arbitrary pieces (split across
 * reads, several per read, partial tails), malformed events skipped and
 * counted, and the resume offset always at the first undelivered event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "vmm/ch/ch.h"

typedef struct seen {
    char names[16][64];
    uint64_t secs[16];
    uint32_t nanos[16];
    uint64_t ends[16];
    char prop_id[16][32];
    int n;
} seen;

static void collect(const ch_event *ev, void *ud)
{
    seen *s = ud;
    assert_true(s->n < 16);
    snprintf(s->names[s->n], 64, "%s/%s", ev->source, ev->event);
    s->secs[s->n] = ev->secs;
    s->nanos[s->n] = ev->nanos;
    s->ends[s->n] = ev->end_offset;
    s->prop_id[s->n][0] = 0;
    if (ev->properties) {
        const char *id = json_string_value(json_object_get((json_t *)ev->properties, "id"));
        snprintf(s->prop_id[s->n], 32, "%s", id ? id : "");
    }
    s->n++;
}

/* Exactly what CH's serde_json::to_string_pretty + "\n\n" produces. */
static const char EV1[] = "{\n  \"timestamp\": {\n    \"secs\": 0,\n    \"nanos\": 41870\n  },\n"
                          "  \"source\": \"vmm\",\n  \"event\": \"starting\",\n"
                          "  \"properties\": null\n}\n\n";
static const char EV2[] = "{\n  \"timestamp\": {\n    \"secs\": 1,\n    \"nanos\": 5\n  },\n"
                          "  \"source\": \"virtio-device\",\n  \"event\": \"activated\",\n"
                          "  \"properties\": {\n    \"id\": \"_disk0\"\n  }\n}\n\n";
static const char EV3[] = "{\n  \"timestamp\": {\n    \"secs\": 2,\n    \"nanos\": 999999999\n"
                          "  },\n  \"source\": \"vm\",\n  \"event\": \"booted\",\n"
                          "  \"properties\": null\n}\n\n";

static void test_several_per_read(void **state)
{
    char all[2048];
    snprintf(all, sizeof(all), "%s%s%s", EV1, EV2, EV3);
    ch_event_parser p;
    ch_event_parser_init(&p, 100);
    seen s = {0};
    assert_int_equal(ch_event_parser_feed(&p, all, strlen(all), collect, &s), 3);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "vmm/starting");
    assert_string_equal(s.names[1], "virtio-device/activated");
    assert_string_equal(s.prop_id[1], "_disk0");
    assert_string_equal(s.names[2], "vm/booted");
    assert_int_equal(s.secs[2], 2);
    assert_int_equal(s.nanos[2], 999999999);
    assert_int_equal(s.nanos[0], 41870);
    /* Offsets are absolute (start offset 100) and point past each event. */
    assert_int_equal(s.ends[0], 100 + strlen(EV1));
    assert_int_equal(s.ends[2], 100 + strlen(all));
    assert_int_equal(p.offset, 100 + strlen(all));
    assert_int_equal(p.malformed, 0);
    ch_event_parser_clear(&p);
}

/* Every possible split point, and byte-by-byte: same events, offset stays at
 * the start of the incomplete event. */
static void test_split_anywhere(void **state)
{
    char all[2048];
    snprintf(all, sizeof(all), "%s%s", EV1, EV2);
    size_t len = strlen(all);
    for (size_t cut = 1; cut < len; cut++) {
        ch_event_parser p;
        ch_event_parser_init(&p, 0);
        seen s = {0};
        ch_event_parser_feed(&p, all, cut, collect, &s);
        int first = s.n;
        if (cut < strlen(EV1) - 1) {
            assert_int_equal(first, 0);
            assert_int_equal(p.offset, 0);
        }
        ch_event_parser_feed(&p, all + cut, len - cut, collect, &s);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.names[1], "virtio-device/activated");
        assert_int_equal(p.offset, len);
        assert_int_equal(p.malformed, 0);
        ch_event_parser_clear(&p);
    }
    ch_event_parser p;
    ch_event_parser_init(&p, 0);
    seen s = {0};
    for (size_t i = 0; i < len; i++)
        ch_event_parser_feed(&p, all + i, 1, collect, &s);
    assert_int_equal(s.n, 2);
    ch_event_parser_clear(&p);
}

static void test_partial_tail_kept(void **state)
{
    ch_event_parser p;
    ch_event_parser_init(&p, 0);
    seen s = {0};
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s{\n  \"timestamp\": {", EV1);
    assert_int_equal(ch_event_parser_feed(&p, buf, strlen(buf), collect, &s), 1);
    /* The resume point is the start of the half-written event. */
    assert_int_equal(p.offset, strlen(EV1));
    assert_int_equal(p.pending.len, strlen(buf) - strlen(EV1));
    /* The event's end "}\n" without the blank line is still incomplete. */
    const char *rest = "\n    \"secs\": 3,\n    \"nanos\": 0\n  },\n  \"source\": \"vm\",\n"
                       "  \"event\": \"paused\",\n  \"properties\": null\n}\n";
    assert_int_equal(ch_event_parser_feed(&p, rest, strlen(rest), collect, &s), 0);
    assert_int_equal(ch_event_parser_feed(&p, "\n", 1, collect, &s), 1);
    assert_string_equal(s.names[1], "vm/paused");
    assert_int_equal(p.pending.len, 0);
    ch_event_parser_clear(&p);
}

static void test_malformed_skipped(void **state)
{
    ch_event_parser p;
    ch_event_parser_init(&p, 0);
    seen s = {0};
    const char *bad[] = {
        "not json\n\n",
        "[1,2]\n\n",
        "{\"source\":\"vm\"}\n\n", /* no event */
        "{\"timestamp\":{\"secs\":-1,\"nanos\":0},\"source\":\"vm\",\"event\":\"x\"}\n\n",
        "{\"timestamp\":{\"secs\":1,\"nanos\":0},\"source\":\"vm\",\"event\":\"x\","
        "\"properties\":[1]}\n\n",
        "{\"timestamp\":{\"secs\":1,\"nanos\":2000000000},\"source\":\"vm\",\"event\":\"x\"}\n\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ch_event_parser_feed(&p, bad[i], strlen(bad[i]), collect, &s);
    assert_int_equal(s.n, 0);
    assert_int_equal(p.malformed, 6);
    /* Stray blank lines are not events and not errors; a good event after
     * the garbage still comes through. */
    ch_event_parser_feed(&p, "\n\n\n", 3, collect, &s);
    ch_event_parser_feed(&p, EV3, strlen(EV3), collect, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(p.malformed, 6);
    ch_event_parser_clear(&p);
}

static void test_runaway_tail_dropped(void **state)
{
    ch_event_parser p;
    ch_event_parser_init(&p, 0);
    seen s = {0};
    char *junk = malloc(1 << 16);
    memset(junk, 'x', 1 << 16);
    for (int i = 0; i < 20; i++)
        ch_event_parser_feed(&p, junk, 1 << 16, collect, &s);
    free(junk);
    assert_true(p.pending.len <= (1u << 20));
    assert_true(p.malformed >= 1);
    ch_event_parser_feed(&p, "\n\n", 2, collect, &s);
    ch_event_parser_feed(&p, EV1, strlen(EV1), collect, &s);
    assert_int_equal(s.n, 1);
    ch_event_parser_clear(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_several_per_read),     cmocka_unit_test(test_split_anywhere),
        cmocka_unit_test(test_partial_tail_kept),    cmocka_unit_test(test_malformed_skipped),
        cmocka_unit_test(test_runaway_tail_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
