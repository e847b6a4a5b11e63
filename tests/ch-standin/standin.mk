# standin.mk - build and test the Cloud Hypervisor stand-in (test-only).
#
#   make B=build/x standin-build   ->  $(B)/ch-standin/cloud-hypervisor
#   make B=build/x standin-test    ->  pytest tests/ch-standin/test_standin_*.py
#
# The stand-in is self-contained (jansson + libc); it is never installed.
# SAN=1 builds it with ASan+UBSan like everything else.

STANDIN_SRC := $(sort $(wildcard tests/ch-standin/*.c))
STANDIN_OBJ := $(patsubst tests/ch-standin/%.c,$(B)/ch-standin/obj/%.o,$(STANDIN_SRC))
STANDIN_BIN := $(B)/ch-standin/cloud-hypervisor
STANDIN_PYTEST ?= -q

$(B)/ch-standin/obj/%.o: tests/ch-standin/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(STANDIN_BIN): $(STANDIN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson -lpthread

standin-build: $(STANDIN_BIN)

# A private --basetemp: pytest sessions of other suites running at the same
# time prune /tmp/pytest-of-$USER and would delete our tmp dirs mid-run.
standin-test: $(STANDIN_BIN)
	@bt=$$(mktemp -d /tmp/chsi.XXXXXX) && \
	CH_STANDIN=$(abspath $(STANDIN_BIN)) python3 -m pytest $(STANDIN_PYTEST) \
		-p no:cacheprovider --basetemp=$$bt tests/ch-standin; \
	rc=$$?; rm -rf $$bt; exit $$rc

-include $(wildcard $(B)/ch-standin/obj/*.d)

.PHONY: standin-build standin-test
