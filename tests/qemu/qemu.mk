# qemu.mk - the QEMU back end against a real qemu-system-x86_64 and a real
# Linux guest built from Debian packages (tests/guest/build.sh).
#
#   make B=build/asan SAN=1 qemu-test   guest + driver + cmocka unit tests + pytest
#   make guest                          only the guests (build/guest)
#
# The guests are never committed: build.sh fetches the packages with apt into
# build/cache/guest-debs (kept) and builds in a few seconds from there.

QEMU_B := $(B)/qemu
GUEST_DIR := build/guest
GUEST_STAMP := $(GUEST_DIR)/guest.env
QEMU_PYTEST ?= -q

$(GUEST_STAMP): tests/guest/build.sh tests/guest/init tests/guest/tiny.S tests/guest/tiny.ld
	bash tests/guest/build.sh $(GUEST_DIR) build/cache/guest-debs

guest: $(GUEST_STAMP)

$(QEMU_B)/qemu-driver: tests/qemu/qemu_driver.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS)

$(QEMU_B)/kvm-probe: tests/qemu/kvm_probe_cli.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS)

$(QEMU_B)/test_qmp: tests/qemu/test_qmp.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS) -lcmocka

$(QEMU_B)/test_qemu_argv: tests/qemu/test_qemu_argv.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS) -lcmocka

qemu-build: $(GUEST_STAMP) $(QEMU_B)/qemu-driver $(QEMU_B)/kvm-probe $(QEMU_B)/test_qmp \
	$(QEMU_B)/test_qemu_argv

# A private --basetemp, as the other pytest suites do.
qemu-test: qemu-build
	@rc=0; $(QEMU_B)/test_qmp || rc=1; $(QEMU_B)/test_qemu_argv || rc=1; \
	bt=$$(mktemp -d /tmp/chqemu.XXXXXX) && \
	QEMU_DRIVER=$(abspath $(QEMU_B)/qemu-driver) KVM_PROBE=$(abspath $(QEMU_B)/kvm-probe) \
	GUEST_DIR=$(abspath $(GUEST_DIR)) python3 -m pytest $(QEMU_PYTEST) \
		-p no:cacheprovider --basetemp=$$bt tests/qemu || rc=1; \
	rm -rf $$bt; exit $$rc

.PHONY: guest qemu-build qemu-test

# Not a test: boot time to the first console marker and QEMU's RSS, median of
# QEMU_BENCH_RUNS runs per configuration (bench/qemu_boot.py). Release build.
QEMU_BENCH_ARGS ?= --runs 5
bench-qemu: $(GUEST_STAMP) $(QEMU_B)/qemu-driver $(QEMU_B)/kvm-probe
	python3 bench/qemu_boot.py --driver $(QEMU_B)/qemu-driver --guest $(GUEST_DIR) \
		--probe $(QEMU_B)/kvm-probe $(QEMU_BENCH_ARGS)

.PHONY: bench-qemu
