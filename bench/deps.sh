#!/usr/bin/env bash
# deps.sh - install what `make bench` needs, idempotently: load generators,
# valgrind (callgrind instruction counts of bench-telemetry) and
# protoc from Debian, the Go code generators of the connect-go peer (pinned,
# `go install`ed into .tools/bench/bin, which is gitignored). When everything is
# present it only checks and returns at once. Nothing is downloaded any other
# way.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.10
PROTOC_GEN_CONNECT_GO_VERSION=v1.19.1

PKGS=(nghttp2-client wrk protobuf-compiler libprotobuf-dev procps python3 valgrind)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench/deps.sh: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

GO=/usr/local/go/bin/go
if [ ! -x "$GO" ]; then
    GO=$(command -v go || true)
fi
[ -n "$GO" ] || { echo "bench/deps.sh: Go not found (expected /usr/local/go/bin/go)" >&2; exit 1; }

BIN="$PWD/.tools/bench/bin"
mkdir -p "$BIN"
# install NAME PACKAGE VERSION: go install PACKAGE@VERSION unless that exact
# version is already there (a stamp file records it).
install() {
    local name=$1 pkg=$2 version=$3
    if [ -x "$BIN/$name" ] && [ "$(cat "$BIN/$name.version" 2>/dev/null)" = "$version" ]; then
        return 0
    fi
    echo "bench/deps.sh: go install $pkg@$version" >&2
    GOBIN="$BIN" "$GO" install "$pkg@$version"
    echo "$version" > "$BIN/$name.version"
}
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-connect-go connectrpc.com/connect/cmd/protoc-gen-connect-go "$PROTOC_GEN_CONNECT_GO_VERSION"
