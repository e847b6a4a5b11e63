# net.mk - chcp's networking and metadata module (src/net): cmocka unit tests
# without privileges, then pytest suites that run the module inside network
# namespaces the tests create (never the host's), and the real guest on QEMU
# with TAP descriptors the module opened.
#
#   make B=build/asan SAN=1 net-test    unit + host + guest suites
#   make bench-net                      allocations/s, setup/teardown time (not a test)

NET_B := $(B)/net
NET_PYTEST ?= -q
# The whole pytest run is cut off after this (about 1 minute is normal).
NET_TEST_TIMEOUT ?= 900

NET_UNIT_BIN := $(patsubst tests/net/%.c,$(NET_B)/%,$(sort $(wildcard tests/net/test_net_*.c)))

$(NET_B)/test_net_%: tests/net/test_net_%.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS) -lsqlite3 -lcmocka

$(NET_B)/net-tool: tests/net/net_tool.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS)

$(NET_B)/net-vm: tests/net/net_vm.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS)

net-build: $(NET_UNIT_BIN) $(NET_B)/net-tool $(NET_B)/net-vm $(GUEST_STAMP)

# A private --basetemp, as the other pytest suites do.
net-test: net-build
	@rc=0; for t in $(NET_UNIT_BIN); do $$t || rc=1; done; \
	bt=$$(mktemp -d /tmp/chnet.XXXXXX) && \
	NET_TOOL=$(abspath $(NET_B)/net-tool) NET_VM=$(abspath $(NET_B)/net-vm) \
	GUEST_DIR=$(abspath $(GUEST_DIR)) timeout $(NET_TEST_TIMEOUT) python3 -m pytest $(NET_PYTEST) \
		-p no:cacheprovider --basetemp=$$bt tests/net || rc=1; \
	rm -rf $$bt; exit $$rc

.PHONY: net-build net-test

# Not a test: how fast addresses are allocated and how long one VM's
# networking takes to set up and tear down (bench/ has the others). Release build.
NET_BENCH_ARGS ?= --runs 20
bench-net: $(NET_B)/net-tool
	python3 tests/net/bench_net.py --tool $(NET_B)/net-tool $(NET_BENCH_ARGS)

.PHONY: bench-net
