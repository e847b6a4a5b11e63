#!/usr/bin/env bash
# o11y-deps.sh - the real telemetry backends the o11y suite and `make o11y`
# use, installed idempotently (a second run only checks, in well under a
# second):
#
#   prometheus + promtool   Debian package (2.42); its own service is kept off
#   jaeger-all-in-one       built from the Go module (v1.66.0) into .tools/bin:
#                           `go install` refuses the module (replace
#                           directives), so build it inside the downloaded
#                           module. ~9 minutes on 2 cores the first time.
#   otelcol-chcp            the OpenTelemetry Collector (core OTLP receiver and
#                           exporter), built with the collector's builder
#                           (v0.165.0, Go module proxy) from
#                           tests/o11y/otelcol-builder.yaml. ~3 minutes the
#                           first time.
#   opentelemetry-proto     PyPI (tests/requirements.txt), decodes OTLP
#   buf                     npm (tests/integration), the test client
#
# Called by scripts/deps.sh --tools and by `make o11y-test` / `make o11y`.
set -euo pipefail
cd "$(dirname "$0")/.."

JAEGER_VERSION=v1.66.0
TOOLS_DIR="$PWD/.tools"
mkdir -p "$TOOLS_DIR/bin"
export PATH="/usr/local/go/bin:$PATH"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# ---- Prometheus (Debian) -------------------------------------------------------
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "ok installed"; then
    echo "o11y-deps.sh: apt-get install prometheus" >&2
    $SUDO apt-get update -qq
    # No recommends: prometheus-node-exporter would start listening on :9100.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # Where systemd runs, the package enables and starts a service on
    # 0.0.0.0:9090: ours run on loopback with their own configuration.
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
        # Without systemd the postinst may have started it through its init script.
        $SUDO invoke-rc.d prometheus stop >/dev/null 2>&1 || true
        $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi

# ---- Jaeger all-in-one (Go module proxy) -----------------------------------------
JAEGER_BIN="$TOOLS_DIR/bin/jaeger-all-in-one"
if [ ! -x "$JAEGER_BIN" ] || [ "$(cat "$TOOLS_DIR/jaeger.version" 2>/dev/null)" != "$JAEGER_VERSION" ]; then
    echo "o11y-deps.sh: building jaeger-all-in-one $JAEGER_VERSION (takes minutes the first time)" >&2
    moddir=$(cd "$TOOLS_DIR" && go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    (cd "$moddir" && GOFLAGS= nice go build -o "$JAEGER_BIN.tmp" ./cmd/all-in-one)
    mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
    echo "$JAEGER_VERSION" > "$TOOLS_DIR/jaeger.version"
fi

# ---- OpenTelemetry Collector (Go module proxy) ------------------------------------------
OTELCOL_VERSION=v0.165.0
OTELCOL_BIN="$TOOLS_DIR/bin/otelcol-chcp"
OTELCOL_STAMP="$OTELCOL_VERSION $(sha256sum tests/o11y/otelcol-builder.yaml | cut -c1-16)"
if [ ! -x "$OTELCOL_BIN" ] || [ "$(cat "$TOOLS_DIR/otelcol.version" 2>/dev/null)" != "$OTELCOL_STAMP" ]; then
    echo "o11y-deps.sh: building the OpenTelemetry Collector $OTELCOL_VERSION (minutes the first time)" >&2
    GOBIN="$TOOLS_DIR/bin" go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
    work=$(mktemp -d)
    sed "s|OUTPUT_PATH|$work/out|" tests/o11y/otelcol-builder.yaml > "$work/manifest.yaml"
    (cd "$work" && GOFLAGS= nice "$TOOLS_DIR/bin/builder" --config manifest.yaml >"$work/build.log" 2>&1) ||
        { tail -30 "$work/build.log" >&2; rm -rf "$work"; exit 1; }
    mv "$work/out/otelcol-chcp" "$OTELCOL_BIN"
    rm -rf "$work"
    echo "$OTELCOL_STAMP" > "$TOOLS_DIR/otelcol.version"
fi

# ---- Python: the OTLP protobuf classes ------------------------------------------------
if ! python3 -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
    echo "o11y-deps.sh: pip install -r tests/requirements.txt" >&2
    python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt 2>&1 |
        grep -v "as the 'root' user" || true
fi
python3 -m pytest --version >/dev/null 2>&1 || python3 -m pip install -q pytest

# ---- buf (buf curl) for the test clients ------------------------------------------------
if [ ! -x tests/integration/node_modules/.bin/buf ] && [ ! -x "$TOOLS_DIR/node_modules/.bin/buf" ]; then
    echo "o11y-deps.sh: npm ci in tests/integration" >&2
    (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
fi
exit 0
