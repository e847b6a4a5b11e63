#!/usr/bin/env bash
# test.sh - what `make test` (and so CI) runs: install what is missing, build
# everything under AddressSanitizer + UndefinedBehaviorSanitizer, then run
# every suite. Each suite's own make target does the work; this script only
# sequences them and prints one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PWD/.tools/bin:$PATH"
export B=build/asan
JOBS=$(nproc)

bash scripts/deps.sh --tools || { echo "deps.sh failed" >&2; exit 1; }

# ASan: fail on leaks and errors; UBSan: abort with a stack trace.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

passed=0
failed=0
failed_names=()

suite() {
    local name=$1
    shift
    echo
    echo "===== suite: $name ====="
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "===== $name: ok ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        echo "===== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

has_target() { grep -qs "^$1:" tests/*/*.mk tests/tests.mk; }

suite build make -j"$JOBS" B=$B SAN=1 build
suite unit make -j"$JOBS" B=$B SAN=1 unit-test
for t in telemetry-test standin-test fc-standin-test conformance-test integration-test cli-test e2e-test crash-test o11y-test hostile-test security-test qemu-test net-test packaging-test quickstart-test; do
    if has_target "$t"; then
        suite "${t%-test}" make B=$B SAN=1 "$t"
    fi
done
suite fuzz-smoke make fuzz-smoke FUZZ_SECONDS="${FUZZ_SECONDS:-15}"

echo
[ "$failed" -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
