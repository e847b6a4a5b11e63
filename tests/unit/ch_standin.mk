# ch_standin.mk - test_ch_standin runs the CH back end against the Cloud
# Hypervisor stand-in, so building that test first builds the stand-in
# (rules in tests/ch-standin/standin.mk, when present).
ifneq ($(wildcard tests/ch-standin/standin.mk),)
$(B)/tests/test_ch_standin: | $(B)/ch-standin/cloud-hypervisor
endif
