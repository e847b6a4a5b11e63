# bench.mk - `make bench`: chcp against a connect-go peer, measured side by side
# in one run (included by the top Makefile). Benchmarks only measure and report;
# nothing here asserts timing. Method and latest figures: docs/benchmarks.md.
#
#   make bench                      everything (~10 minutes)
#   make bench-callgrind            instructions per RPC only (~1 minute)
#   make bench BENCH_ARGS='--rounds 3 --duration 3'
#   make bench-tools                only build the peer and the Go helpers
#
# Go code is generated from proto/ at bench time into bench/connect-go/gen/
# (gitignored) with the pinned plugins bench/deps.sh installs.

BENCH_B := $(abspath $(B))/bench
BENCH_GO := $(or $(wildcard /usr/local/go/bin/go),go)
BENCH_PLUGINS := $(CURDIR)/.tools/bench/bin
BENCH_GEN := bench/connect-go/gen
BENCH_GEN_STAMP := $(BENCH_GEN)/.stamp
BENCH_GO_PKG := chcp.local/bench/gen/cloudhypervisor/v1;vmv1
BENCH_GO_SRC := $(shell find bench/connect-go -name '*.go' -not -path '*/gen/*' 2>/dev/null) \
	bench/connect-go/go.mod bench/connect-go/go.sum
BENCH_ARGS ?=
# The CH stand-in, when its rules exist (tests/ch-standin/standin.mk).
BENCH_STANDIN := $(if $(wildcard tests/ch-standin/standin.mk),$(B)/ch-standin/cloud-hypervisor)

$(BENCH_GEN_STAMP): proto/cloudhypervisor/v1/vm.proto bench/deps.sh
	@bash bench/deps.sh
	@rm -rf $(BENCH_GEN) && mkdir -p $(BENCH_GEN)
	protoc -Iproto -I/usr/include \
		--plugin=protoc-gen-go=$(BENCH_PLUGINS)/protoc-gen-go \
		--plugin=protoc-gen-connect-go=$(BENCH_PLUGINS)/protoc-gen-connect-go \
		--go_out=$(BENCH_GEN) --go_opt=paths=source_relative \
		--go_opt='Mcloudhypervisor/v1/vm.proto=$(BENCH_GO_PKG)' \
		--connect-go_out=$(BENCH_GEN) --connect-go_opt=paths=source_relative \
		--connect-go_opt='Mcloudhypervisor/v1/vm.proto=$(BENCH_GO_PKG)' \
		cloudhypervisor/v1/vm.proto
	@touch $@

$(BENCH_B)/peer: $(BENCH_GO_SRC) $(BENCH_GEN_STAMP)
	@mkdir -p $(dir $@)
	cd bench/connect-go && $(BENCH_GO) build -trimpath -o $@ ./cmd/peer

$(BENCH_B)/benchctl: $(BENCH_GO_SRC) $(BENCH_GEN_STAMP)
	@mkdir -p $(dir $@)
	cd bench/connect-go && $(BENCH_GO) build -trimpath -o $@ ./cmd/benchctl

# The preload that lets the daemon spawn VMMs under valgrind 3.19 (see the
# file); a benchmark tool, never linked into chcp.
$(BENCH_B)/vgshim.so: bench/vgshim.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $<

bench-tools: $(BENCH_B)/peer $(BENCH_B)/benchctl $(BENCH_B)/vgshim.so

# Dependencies first (h2load, protoc), then the release daemon, the stand-in
# and the Go programs; then the driver, which prints the table and writes
# bench/results/latest.json.
bench:
	@bash bench/deps.sh
	@$(MAKE) --no-print-directory B=$(B) SAN=0 build bench-tools $(BENCH_STANDIN)
	python3 bench/run.py --build-dir $(B) $(if $(BENCH_STANDIN),--standin $(BENCH_STANDIN)) $(BENCH_ARGS)
	$(if $(BENCH_STANDIN),@$(MAKE) --no-print-directory B=$(B) bench-callgrind)
	$(if $(BENCH_STANDIN),@$(MAKE) --no-print-directory B=$(B) bench-recovery)
	$(if $(BENCH_STANDIN),@$(MAKE) --no-print-directory B=$(B) bench-telemetry)

# RPC throughput with telemetry fully on (rate 1.0) versus off, in one run:
# ListVms with a 10-VM page, then with an empty page (issue 15's targets: on >=
# 90% and >= 80% of off, no span dropped); then the instructions per RPC under
# callgrind, on versus off, for both (deterministic: the machine's load does
# not matter). TELEMETRY_BENCH_ARGS, e.g. '--rounds 9 --duration 5'.
TELEMETRY_BENCH_ARGS ?=
bench-telemetry:
	@bash bench/deps.sh
	@$(MAKE) --no-print-directory B=$(B) SAN=0 build $(B)/ch-standin/cloud-hypervisor
	python3 bench/telemetry_bench.py --bin $(B)/chcp-api --standin $(B)/ch-standin/cloud-hypervisor \
		--vms 10 --json bench/results/telemetry-10vms.json $(TELEMETRY_BENCH_ARGS)
	python3 bench/telemetry_bench.py --bin $(B)/chcp-api --json bench/results/telemetry-empty.json \
		$(TELEMETRY_BENCH_ARGS)
	python3 bench/telemetry_bench.py --bin $(B)/chcp-api --standin $(B)/ch-standin/cloud-hypervisor \
		--vms 10 --callgrind --json bench/results/telemetry-callgrind-10vms.json
	python3 bench/telemetry_bench.py --bin $(B)/chcp-api --callgrind \
		--json bench/results/telemetry-callgrind-empty.json

# Instructions per RPC under callgrind (load-independent): ListVms of 10 VMs on
# each protocol, GetVmInfo, CreateVm, BootVm, ShutdownVm, DeleteVm, each with
# everything it causes, per thread. bench/results/callgrind.json.
CALLGRIND_BENCH_ARGS ?=
bench-callgrind:
	@bash bench/deps.sh
	@$(MAKE) --no-print-directory B=$(B) SAN=0 build bench-tools $(B)/ch-standin/cloud-hypervisor
	python3 bench/callgrind_bench.py --bin $(B)/chcp-api --standin $(B)/ch-standin/cloud-hypervisor \
		--benchctl $(BENCH_B)/benchctl --shim $(BENCH_B)/vgshim.so $(CALLGRIND_BENCH_ARGS)

# Start-up with 1,000 running VMs to re-adopt (docs/durability.md).
bench-recovery:
	@$(MAKE) --no-print-directory B=$(B) SAN=0 build $(B)/ch-standin/cloud-hypervisor
	@mkdir -p $(BENCH_B)
	python3 bench/recovery_bench.py --bin $(B)/chcp-api --standin $(B)/ch-standin/cloud-hypervisor \
		--vms 1000 --json $(BENCH_B)/recovery.json

.PHONY: bench-telemetry bench bench-tools bench-recovery bench-callgrind
