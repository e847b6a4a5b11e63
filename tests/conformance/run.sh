#!/usr/bin/env bash
# run.sh - run the official conformance suite against our conformance server.
#   run.sh <connectconformance> <server binary> [extra runner flags...]
# Fails unless every selected case passes. Known failures (none today) would go
# in known-failing.txt, one pattern per line, with the reason in README.md.
set -euo pipefail
runner=$1
server=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
args=(--mode server --conf "$here/config.yaml" -v)
if [ -s "$here/known-failing.txt" ]; then
    args+=(--known-failing "@$here/known-failing.txt")
fi
# The suite takes about a minute; bound it so a hang cannot stall CI.
exec timeout 900 "$runner" "${args[@]}" "$@" -- "$server"
