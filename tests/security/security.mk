# security.mk - the security suite (tests/security/): TLS on the API port
# (curl, buf curl, chcpctl and raw ssl clients), mutual TLS, bearer tokens,
# the authorization policy, Unix-socket peer credentials and the secure
# defaults, against the real chcp-api (docs/security.md). Loopback only.
# scripts/test.sh runs `security-test` with B=build/asan SAN=1.
#
#   make B=build/asan SAN=1 security-test [SECURITY_ARGS='-k tls -x']

SECURITY_DIR := tests/security

security-test: $(B)/chcp-api $(B)/chcpctl standin-build \
		$(INTEGRATION_DIR)/node_modules/.package-lock.json
	CHCP_BIN=$(abspath $(B)/chcp-api) CHCPCTL_BIN=$(abspath $(B)/chcpctl) \
		CHCP_STANDIN=$(abspath $(B)/ch-standin/cloud-hypervisor) \
		python3 -m pytest -q -p no:cacheprovider $(SECURITY_DIR) $(SECURITY_ARGS)

.PHONY: security-test
