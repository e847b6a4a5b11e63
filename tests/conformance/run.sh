#!/usr/bin/env bash
# run.sh - run the official conformance suite against our conformance server.
#   run.sh <connectconformance> <server binary> [extra runner flags...]
# Fails unless every selected case passes and, for sanitizer builds, unless the
# server processes ended without any ASan/UBSan/LSan report. Known failures
# (none today) would go in known-failing.txt, one pattern per line, with the
# reason in README.md.
set -euo pipefail
runner=$1
server=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
args=(--mode server --conf "$here/config.yaml" -v)
if [ -s "$here/known-failing.txt" ]; then
    args+=(--known-failing "@$here/known-failing.txt")
fi
# Sanitizer reports of the (several) server processes land in files here.
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
export ASAN_OPTIONS="log_path=$reports/asan:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:${UBSAN_OPTIONS:-}"
# The suite takes well under a minute; bound it so a hang cannot stall CI.
rc=0
timeout 900 "$runner" "${args[@]}" "$@" -- "$server" || rc=$?
if compgen -G "$reports/*" >/dev/null; then
    echo "conformance: sanitizer reports from the server:" >&2
    cat "$reports"/* >&2
    rc=1
fi
exit $rc
