# tests.mk - how tests are built and run (included by the top Makefile).
#
# Unit tests: every tests/unit/test_*.c is one cmocka program linked against
# libchcp.a. Suites with their own build rules live in tests/*/*.mk.

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

$(B)/tests/%: tests/unit/%.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS) -lcmocka

unit-build: $(UNIT_BIN)

# Run every unit test; each prints cmocka's summary. Fails if any fails.
unit-test: $(UNIT_BIN)
	@rc=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || rc=1; done; exit $$rc

# ---- fuzzing (clang + libFuzzer, its own build tree) -------------------------
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_B := build/fuzz
FUZZ_SECONDS ?= 20

fuzz-build:
	$(MAKE) B=$(FUZZ_B) CC=clang SAN=1 EXTRA_CFLAGS=-fsanitize=fuzzer-no-link $(FUZZ_B)/libchcp.a
	@mkdir -p $(FUZZ_B)/fuzz
	@for f in $(FUZZ_SRC); do \
		n=$$(basename $$f .c); \
		clang -std=gnu17 -g -O1 -D_GNU_SOURCE -Isrc -I$(FUZZ_B)/gen $(PKG_CFLAGS) \
			-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
			-o $(FUZZ_B)/fuzz/$$n $$f $(FUZZ_B)/libchcp.a $(PKG_LIBS) || exit 1; \
	done

# A short, fixed-time run of every target from its seed corpus.
fuzz-smoke: fuzz-build
	@rc=0; for f in $(FUZZ_SRC); do \
		n=$$(basename $$f .c); corpus=tests/fuzz/corpus/$$n; work=$(FUZZ_B)/corpus/$$n; \
		mkdir -p $$work; \
		echo "== fuzz $$n ($(FUZZ_SECONDS)s)"; \
		$(FUZZ_B)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $$work \
			$$( [ -d $$corpus ] && echo $$corpus ) >$(FUZZ_B)/fuzz/$$n.log 2>&1 \
			|| { rc=1; tail -50 $(FUZZ_B)/fuzz/$$n.log; }; \
	done; exit $$rc

-include $(wildcard tests/*/*.mk)

.PHONY: unit-build unit-test fuzz-build fuzz-smoke
