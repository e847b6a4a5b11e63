#!/usr/bin/env bash
# dev.sh - `make dev`: build, run, and rebuild + restart whenever a source file
# changes (inotifywait from Debian's inotify-tools). Ctrl-C stops everything.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v inotifywait >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq inotify-tools >/dev/null
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; exit 0' INT TERM
while true; do
    if make -s build; then
        ./build/chcp-api "$@" &
        pid=$!
    else
        echo "dev.sh: build failed; waiting for changes" >&2
    fi
    inotifywait -qq -r -e close_write,create,delete,move src proto Makefile
    stop
done
