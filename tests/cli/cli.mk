# cli.mk - chcpctl's tests (included by tests/tests.mk).
#
#   make B=build/asan SAN=1 cli-test     pytest tests/cli: the real chcpctl against a
#                                        real chcp-api on the CH stand-in, plus the
#                                        completion scripts and the man page
#
# The client library's cmocka tests (tests/unit/test_client*.c,
# tests/unit/test_cli_*.c) run with `unit-test`; they need chcpctl's own
# libraries (libyaml, OpenSSL) on the link line.

CLI_UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,\
	$(wildcard tests/unit/test_client*.c tests/unit/test_cli_*.c))

$(CLI_UNIT_BIN): $(B)/tests/%: tests/unit/%.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS) $(CLI_LIBS) -lcmocka

cli-test: $(B)/chcp-api $(B)/chcpctl standin-build
	CHCP_BIN=$(abspath $(B)/chcp-api) CHCPCTL_BIN=$(abspath $(B)/chcpctl) \
		CHCP_STANDIN=$(abspath $(B)/ch-standin/cloud-hypervisor) \
		python3 -m pytest -q -p no:cacheprovider tests/cli

.PHONY: cli-test
