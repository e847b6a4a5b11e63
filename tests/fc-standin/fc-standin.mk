# fc-standin.mk - build and test the Firecracker stand-in (test-only).
#
#   make B=build/x fc-standin-build   ->  $(B)/fc-standin/firecracker
#   make B=build/x fc-standin-test    ->  pytest tests/fc-standin/test_fc_*.py
#
# The stand-in is self-contained (jansson + libc); it is never installed.
# SAN=1 builds it with ASan+UBSan like everything else.

FC_STANDIN_SRC := $(sort $(wildcard tests/fc-standin/*.c))
FC_STANDIN_OBJ := $(patsubst tests/fc-standin/%.c,$(B)/fc-standin/obj/%.o,$(FC_STANDIN_SRC))
FC_STANDIN_BIN := $(B)/fc-standin/firecracker
FC_STANDIN_PYTEST ?= -q

$(B)/fc-standin/obj/%.o: tests/fc-standin/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(FC_STANDIN_BIN): $(FC_STANDIN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson -lpthread -lm

fc-standin-build: $(FC_STANDIN_BIN)

# A private --basetemp: pytest sessions of other suites running at the same
# time prune /tmp/pytest-of-$USER and would delete our tmp dirs mid-run.
fc-standin-test: $(FC_STANDIN_BIN)
	@bt=$$(mktemp -d /tmp/fcsi.XXXXXX) && \
	FC_STANDIN=$(abspath $(FC_STANDIN_BIN)) python3 -m pytest $(FC_STANDIN_PYTEST) \
		-p no:cacheprovider --basetemp=$$bt tests/fc-standin; \
	rc=$$?; rm -rf $$bt; exit $$rc

-include $(wildcard $(B)/fc-standin/obj/*.d)

.PHONY: fc-standin-build fc-standin-test
