# integration.mk - end-to-end tests: the real chcp-api binary driven by
# pytest, buf curl, connect-es, curl and raw sockets (tests/integration/).
# Included by tests/tests.mk; scripts/test.sh runs `integration-test` with
# B=build/asan SAN=1, so the daemon runs under ASan+UBSan.

INTEGRATION_DIR := tests/integration

$(INTEGRATION_DIR)/node_modules/.package-lock.json: $(INTEGRATION_DIR)/package-lock.json
	cd $(INTEGRATION_DIR) && npm ci --no-audit --no-fund --loglevel=error

# The VM lifecycle tests run VMs on the Cloud Hypervisor stand-in
# (tests/ch-standin), built into the same build dir.
integration-test: $(B)/chcp-api standin-build $(INTEGRATION_DIR)/node_modules/.package-lock.json
	CHCP_BIN=$(abspath $(B)/chcp-api) CHCP_STANDIN=$(abspath $(B)/ch-standin/cloud-hypervisor) \
		python3 -m pytest -q -p no:cacheprovider $(INTEGRATION_DIR)

.PHONY: integration-test
