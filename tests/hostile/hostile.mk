# hostile.mk - the hostile-client suite (tests/hostile/): pytest drives the
# real chcp-api with clients that try to exhaust, confuse or lock it out, and
# asserts the documented bounds (docs/security.md). Loopback only, bounded in
# time. scripts/test.sh runs `hostile-test` with B=build/asan SAN=1: most tests
# run the sanitized daemon; those that measure memory run a release build
# (build/rel), because ASan's shadow memory and quarantine would swamp RSS.
#
#   make B=build/asan SAN=1 hostile-test [HOSTILE_ARGS='-k budget -x']

HOSTILE_DIR := tests/hostile
HOSTILE_REL := build/rel

# Tests that run hundreds of VMs (test_store_fdlimit.py) use the release
# stand-in: 1.7 MB per process instead of ASan's 8 MB.
HOSTILE_STANDIN_REL := $(HOSTILE_REL)/ch-standin/cloud-hypervisor

ifneq ($(abspath $(B)),$(abspath $(HOSTILE_REL)))
$(HOSTILE_REL)/chcp-api: FORCE
	$(MAKE) --no-print-directory B=$(HOSTILE_REL) SAN=0 $(HOSTILE_REL)/chcp-api
$(HOSTILE_STANDIN_REL): FORCE
	$(MAKE) --no-print-directory B=$(HOSTILE_REL) SAN=0 $(HOSTILE_STANDIN_REL)
endif

hostile-test: $(B)/chcp-api $(HOSTILE_REL)/chcp-api standin-build $(HOSTILE_STANDIN_REL)
	CHCP_BIN=$(abspath $(B)/chcp-api) CHCP_RELEASE_BIN=$(abspath $(HOSTILE_REL)/chcp-api) \
		CHCP_STANDIN=$(abspath $(B)/ch-standin/cloud-hypervisor) \
		CHCP_STANDIN_LIGHT=$(abspath $(HOSTILE_STANDIN_REL)) \
		python3 -m pytest -q -p no:cacheprovider $(HOSTILE_DIR) $(HOSTILE_ARGS)

.PHONY: hostile-test
