# o11y.mk - observability against the real things (docs/observability.md).
#
#   make B=build/asan SAN=1 o11y-test   Jaeger, Prometheus, an OpenTelemetry
#                                       Collector and a failing OTLP receiver
#                                       around a real chcp-api
#   make o11y        start Jaeger and Prometheus on loopback for a chcp on the
#                    default ports (OTLP 4318, Prometheus scrape 9464); prints URLs
#   make o11y-stop   stop them
#
# Variables: O11Y_TESTS (pytest args, default the whole suite).

O11Y_TESTS ?= tests/o11y

# A private --basetemp: pytest sessions of other suites running at the same
# time prune /tmp/pytest-of-$USER and would delete our tmp dirs mid-run.
o11y-test: $(B)/chcp-api $(B)/ch-standin/cloud-hypervisor $(B)/tests/otlp_sample
	@bash scripts/o11y-deps.sh
	@bt=$$(mktemp -d /tmp/chcp-o11y-pytest.XXXXXX) && \
	CHCP_BIN=$(abspath $(B))/chcp-api \
	CHCP_CH_BINARY=$(abspath $(B)/ch-standin/cloud-hypervisor) \
	OTLP_SAMPLE=$(abspath $(B))/tests/otlp_sample \
		python3 -m pytest -q -p no:cacheprovider --basetemp=$$bt $(O11Y_TESTS); \
	rc=$$?; rm -rf $$bt; exit $$rc

o11y:
	@bash scripts/o11y-deps.sh
	@bash scripts/o11y.sh start

o11y-stop:
	@bash scripts/o11y.sh stop

.PHONY: o11y-test o11y o11y-stop
