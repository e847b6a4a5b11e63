#!/usr/bin/env bash
# deps.sh - install what chcp needs to build (and, with --tools, to test and
# benchmark) on Debian 12. Idempotent: when everything is present it only
# checks and returns in well under a second.
#
#   scripts/deps.sh            build dependencies (Debian packages)
#   scripts/deps.sh --tools    also test/bench tools: Go (connectconformance,
#                              jaeger later), npm (buf, connect-es), pytest
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=0
for a in "$@"; do
    case "$a" in
    --tools) TOOLS=1 ;;
    *) echo "deps.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

BUILD_PKGS=(
    build-essential pkg-config git
    libuv1-dev libnghttp2-dev libhttp-parser-dev
    libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
    libjansson-dev zlib1g-dev libsqlite3-dev libsystemd-dev libcurl4-openssl-dev libunistring-dev
    libyaml-dev libssl-dev
    # src/rpc: brotli and zstd message compression
    libzstd-dev libbrotli-dev
    # src/net: netlink and nftables; the tools it runs (NoCloud seed images,
    # qcow2 layers)
    libmnl-dev libnftables-dev genisoimage qemu-utils
)
TEST_PKGS=(
    libcmocka-dev clang clang-tidy clang-format cppcheck libclang-rt-14-dev
    nghttp2-client curl jq python3-pytest wrk procps iproute2 psmisc
    zsh groff-base openssl
    # tests/qemu: a real QEMU and the guest tools (tests/guest/build.sh needs
    # lz4 to unpack the kernel; seeds are made with genisoimage or mtools)
    qemu-system-x86 lz4 binutils genisoimage dosfstools mtools iputils-ping
    # tests/packaging: dpkg-shlibdeps, systemd-analyze and a systemd to boot
    dpkg-dev file systemd
    # tests/net: the nft command to read chcp's table back
    nftables
)

missing=()
want=("${BUILD_PKGS[@]}")
[ "$TOOLS" = 1 ] && want+=("${TEST_PKGS[@]}")
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps.sh: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$TOOLS" = 1 ] || exit 0

# ---- tools from language registries, pinned, into .tools/ -----------------
TOOLS_DIR="$PWD/.tools"
mkdir -p "$TOOLS_DIR/bin"
export GOBIN="$TOOLS_DIR/bin"
export PATH="/usr/local/go/bin:$PATH"

# The conformance runner and its .proto files (from the same Go module, never
# committed), one directory per version so checkouts pinning different
# versions can share .tools/. The pin lives in tests/conformance/runner-version.
CONFORMANCE_VERSION=$(cat tests/conformance/runner-version)
CONF_DIR="$TOOLS_DIR/conformance/$CONFORMANCE_VERSION"
mkdir -p "$CONF_DIR"
if [ ! -x "$CONF_DIR/bin/connectconformance" ]; then
    echo "deps.sh: go install connectconformance@$CONFORMANCE_VERSION" >&2
    GOBIN="$CONF_DIR/bin" go install "connectrpc.com/conformance/cmd/connectconformance@$CONFORMANCE_VERSION"
fi
if [ ! -d "$CONF_DIR/proto" ]; then
    moddir=$(cd "$TOOLS_DIR" && go mod download -json "connectrpc.com/conformance@$CONFORMANCE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    cp -r "$moddir/proto" "$CONF_DIR/proto.tmp"
    chmod -R u+w "$CONF_DIR/proto.tmp"
    mv "$CONF_DIR/proto.tmp" "$CONF_DIR/proto"
fi

# gRPC tools the integration suite drives the daemon with: grpcurl
# (reflection) and grpc_health_probe (the gRPC health probe Kubernetes
# documents), pinned.
GRPCURL_VERSION=v1.9.4
if [ ! -x "$GOBIN/grpcurl" ] || [ "$(cat "$TOOLS_DIR/grpcurl.version" 2>/dev/null)" != "$GRPCURL_VERSION" ]; then
    echo "deps.sh: go install grpcurl@$GRPCURL_VERSION" >&2
    go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
    echo "$GRPCURL_VERSION" > "$TOOLS_DIR/grpcurl.version"
fi
HEALTH_PROBE_VERSION=v0.4.63
if [ ! -x "$GOBIN/grpc-health-probe" ] || [ "$(cat "$TOOLS_DIR/grpc-health-probe.version" 2>/dev/null)" != "$HEALTH_PROBE_VERSION" ]; then
    echo "deps.sh: go install grpc-health-probe@$HEALTH_PROBE_VERSION" >&2
    go install "github.com/grpc-ecosystem/grpc-health-probe@$HEALTH_PROBE_VERSION"
    echo "$HEALTH_PROBE_VERSION" > "$TOOLS_DIR/grpc-health-probe.version"
fi

# buf (for `buf lint`) from npm, pinned.
BUF_VERSION=1.75.0
if [ "$(cat "$TOOLS_DIR/buf.version" 2>/dev/null)" != "$BUF_VERSION" ]; then
    echo "deps.sh: npm install @bufbuild/buf@$BUF_VERSION" >&2
    npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" "@bufbuild/buf@$BUF_VERSION" >/dev/null
    echo "$BUF_VERSION" > "$TOOLS_DIR/buf.version"
fi

# Python test dependencies (pytest comes with the machine's Python or Debian).
if [ -f tests/requirements.txt ]; then
    # Every pinned line must be installed (not just one of them).
    frozen=$(python3 -m pip freeze 2>/dev/null || true)
    pip_missing=0
    while read -r req; do
        { [ -z "$req" ] || [[ "$req" == \#* ]]; } && continue
        grep -qixF -- "$req" <<<"$frozen" || pip_missing=1
    done <tests/requirements.txt
    if [ "$pip_missing" = 1 ]; then
        echo "deps.sh: pip install -r tests/requirements.txt" >&2
        python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt 2>&1 | grep -v "as the 'root' user" || true
    fi
    python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q pytest
fi

# npm test clients (connect-es, buf for the suites) live next to their suites.
for pj in tests/*/package.json bench/*/package.json; do
    [ -f "$pj" ] || continue
    d=$(dirname "$pj")
    if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules/.package-lock.json" ]; then
        echo "deps.sh: npm ci in $d" >&2
        (cd "$d" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi)
    fi
done

# Jaeger, Prometheus and the OTLP decoder for the o11y suite (tests/o11y). Not
# fatal here: `make o11y-test` runs it again and fails loudly on what is missing.
bash scripts/o11y-deps.sh || echo "deps.sh: scripts/o11y-deps.sh failed (only tests/o11y needs it)" >&2
exit 0
