# e2e.mk - the end-to-end lifecycle suite (tests/e2e/README.md).
#
#   make e2e-test    build the daemon and the CH stand-in with sanitizers in
#                    build/asan, generate the Connect client code from proto/,
#                    run every tests/e2e/*.test.mjs with node --test
#
# Variables: E2E_B (build dir: $(B) when SAN=1 is given, else build/asan),
# E2E_TESTS (files to run).

E2E_B ?= $(if $(filter 1,$(SAN)),$(B),build/asan)
E2E_DIR := tests/e2e
E2E_TESTS ?= $(notdir $(wildcard $(E2E_DIR)/*.test.mjs))

$(E2E_DIR)/node_modules/.stamp: $(E2E_DIR)/package.json $(wildcard $(E2E_DIR)/package-lock.json)
	cd $(E2E_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(E2E_DIR)/gen/.stamp: $(E2E_DIR)/node_modules/.stamp $(E2E_DIR)/buf.gen.yaml $(API_PROTOS)
	cd $(E2E_DIR) && rm -rf gen && PATH=$$PWD/node_modules/.bin:$$PATH buf generate ../../proto --template buf.gen.yaml
	@touch $@

e2e-test: $(E2E_DIR)/gen/.stamp
	$(MAKE) B=$(E2E_B) SAN=1 build standin-build
	cd $(E2E_DIR) && CHCP_BIN=$(abspath $(E2E_B))/chcp-api \
		CHCP_STANDIN=$(abspath $(E2E_B))/ch-standin/cloud-hypervisor \
		node --test --test-concurrency=1 $(E2E_TESTS)

.PHONY: e2e-test
