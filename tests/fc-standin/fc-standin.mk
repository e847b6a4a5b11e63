# fc-standin.mk - build and test the Firecracker stand-in (test-only).
#
#   make B=build/x fc-standin-build   ->  $(B)/fc-standin/firecracker
#                                         $(B)/fc-standin/jailer
#                                         $(B)/fc-standin/static/firecracker
#   make B=build/x fc-standin-test    ->  pytest tests/fc-standin/test_fc_*.py
#
# The stand-in is self-contained (jansson + libc); it is never installed.
# SAN=1 builds it and the jailer with ASan+UBSan like everything else. The
# static copy (no sanitizers) is what the jailer copies into a jail, where no
# shared library is reachable.

FC_STANDIN_SRC := $(sort $(wildcard tests/fc-standin/*.c))
FC_STANDIN_OBJ := $(patsubst tests/fc-standin/%.c,$(B)/fc-standin/obj/%.o,$(FC_STANDIN_SRC))
FC_STANDIN_BIN := $(B)/fc-standin/firecracker
FC_STATIC_OBJ := $(patsubst tests/fc-standin/%.c,$(B)/fc-standin/static-obj/%.o,$(FC_STANDIN_SRC))
FC_STATIC_BIN := $(B)/fc-standin/static/firecracker
FC_JAILER_OBJ := $(addprefix $(B)/fc-standin/obj/,jailer/jailer.o argparse.o util.o)
FC_JAILER_BIN := $(B)/fc-standin/jailer
FC_STANDIN_PYTEST ?= -q

$(B)/fc-standin/obj/%.o: tests/fc-standin/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/fc-standin/static-obj/%.o: tests/fc-standin/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -O2 -c -o $@ $<

$(FC_STANDIN_BIN): $(FC_STANDIN_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -ljansson -lpthread -lm

$(FC_STATIC_BIN): $(FC_STATIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -static -o $@ $^ -ljansson -lpthread -lm

$(FC_JAILER_BIN): $(FC_JAILER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^

fc-standin-build: $(FC_STANDIN_BIN) $(FC_STATIC_BIN) $(FC_JAILER_BIN)

# A private --basetemp: pytest sessions of other suites running at the same
# time prune /tmp/pytest-of-$USER and would delete our tmp dirs mid-run.
fc-standin-test: fc-standin-build
	@bt=$$(mktemp -d /tmp/fcsi.XXXXXX) && \
	FC_STANDIN=$(abspath $(FC_STANDIN_BIN)) FC_STANDIN_STATIC=$(abspath $(FC_STATIC_BIN)) \
	FC_JAILER=$(abspath $(FC_JAILER_BIN)) python3 -m pytest $(FC_STANDIN_PYTEST) \
		-p no:cacheprovider --basetemp=$$bt tests/fc-standin; \
	rc=$$?; rm -rf $$bt; exit $$rc

-include $(wildcard $(B)/fc-standin/obj/*.d $(B)/fc-standin/obj/jailer/*.d \
	$(B)/fc-standin/static-obj/*.d)

.PHONY: fc-standin-build fc-standin-test
