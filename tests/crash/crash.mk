# crash.mk - the crash-consistency suite for chcp's durable state
# (tests/crash/crash_test.py; what it checks is in its header comment).
#
#   make B=build/asan SAN=1 crash-test                 # fixed seeds + a random one (printed)
#   make B=build/asan SAN=1 crash-test CRASH_SEED=42   # reproduce one seed
#
# It drives $(B)/chcp-api with the CH stand-in, kills the daemon with SIGKILL
# at random moments of a seeded lifecycle workload (some VMMs deliver events
# late), checks the invariants after every restart, then a graceful restart
# and a cleanup; per seed: the fixed ones (FIXED_SEEDS in crash_test.py) get 6
# kills, the random one (or CRASH_SEED) CRASH_KILLS. Bounded: at most
# CRASH_BUDGET seconds of kill rounds (about 65 s in all under ASan).

CRASH_SEED ?=
CRASH_KILLS ?= 15
CRASH_BUDGET ?= 180

crash-test: $(B)/chcp-api $(B)/ch-standin/cloud-hypervisor
	python3 tests/crash/crash_test.py --bin $(B)/chcp-api \
		--standin $(B)/ch-standin/cloud-hypervisor --kills $(CRASH_KILLS) \
		--budget $(CRASH_BUDGET) $(if $(CRASH_SEED),--seed $(CRASH_SEED))

.PHONY: crash-test
