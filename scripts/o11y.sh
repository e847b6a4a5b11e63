#!/usr/bin/env bash
# o11y.sh - a local Jaeger and Prometheus for looking at a chcp by hand.
#
#   scripts/o11y.sh start    Jaeger (OTLP/HTTP 127.0.0.1:4318, query API 127.0.0.1:16686)
#                            and Prometheus (127.0.0.1:9090) scraping chcp's
#                            Prometheus port 127.0.0.1:9464 and its API port's
#                            /metrics (127.0.0.1:8080) every 5 s; prints the URLs
#   scripts/o11y.sh stop     stop both (pid files)
#   scripts/o11y.sh status
#
# Everything listens on loopback only. State, logs and pid files live in
# $O11Y_DIR (default build/o11y-run). Every port is a variable (defaults in
# brackets): JAEGER_OTLP_PORT [4318], JAEGER_OTLP_GRPC_PORT [4317],
# JAEGER_UI_PORT (query HTTP API) [16686], JAEGER_QUERY_GRPC_PORT [16685],
# JAEGER_COLLECTOR_GRPC_PORT [14250], JAEGER_COLLECTOR_HTTP_PORT [14268],
# JAEGER_ADMIN_PORT [14269], PROMETHEUS_PORT [9090], and the chcp ports
# Prometheus scrapes: CHCP_PROMETHEUS_PORT [9464], CHCP_API_PORT [8080]. Run chcp with
#   UNKEY_CHCP_OTEL_ENABLED=true UNKEY_CHCP_OTEL_ENDPOINT=http://127.0.0.1:4318
# (make o11y calls this after scripts/o11y-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${O11Y_DIR:-$PWD/build/o11y-run}
JAEGER_BIN=${JAEGER_BIN:-$PWD/.tools/bin/jaeger-all-in-one}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
JAEGER_OTLP_PORT=${JAEGER_OTLP_PORT:-4318}
JAEGER_OTLP_GRPC_PORT=${JAEGER_OTLP_GRPC_PORT:-4317}
JAEGER_UI_PORT=${JAEGER_UI_PORT:-16686}
JAEGER_QUERY_GRPC_PORT=${JAEGER_QUERY_GRPC_PORT:-16685}
JAEGER_COLLECTOR_GRPC_PORT=${JAEGER_COLLECTOR_GRPC_PORT:-14250}
JAEGER_COLLECTOR_HTTP_PORT=${JAEGER_COLLECTOR_HTTP_PORT:-14268}
JAEGER_ADMIN_PORT=${JAEGER_ADMIN_PORT:-14269}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
CHCP_PROMETHEUS_PORT=${CHCP_PROMETHEUS_PORT:-9464}
CHCP_API_PORT=${CHCP_API_PORT:-8080}

die() { echo "o11y.sh: $*" >&2; exit 1; }

# The pid in a pid file, if that process is alive and is the program we
# started (a recycled pid is never signalled).
live_pid() {
    local f=$DIR/$1.pid want=$2 pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$want" || return 1
    echo "$pid"
}

wait_http() {
    local url=$1 what=$2 i
    for i in $(seq 1 150); do
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$what did not answer at $url within 30 s (see $DIR/*.log)"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    mkdir -p "$DIR/prometheus-data"
    [ -x "$JAEGER_BIN" ] || die "$JAEGER_BIN missing: run scripts/o11y-deps.sh"
    [ -x "$PROMETHEUS_BIN" ] || die "$PROMETHEUS_BIN missing: run scripts/o11y-deps.sh"

    if live_pid jaeger "$JAEGER_BIN" >/dev/null; then
        echo "o11y.sh: Jaeger already running (pid $(live_pid jaeger "$JAEGER_BIN"))"
    else
        for p in "$JAEGER_OTLP_PORT" "$JAEGER_OTLP_GRPC_PORT" "$JAEGER_UI_PORT" "$JAEGER_QUERY_GRPC_PORT" \
            "$JAEGER_COLLECTOR_GRPC_PORT" "$JAEGER_COLLECTOR_HTTP_PORT" "$JAEGER_ADMIN_PORT"; do
            port_free "$p" || die "127.0.0.1:$p is in use"
        done
        SPAN_STORAGE_TYPE=memory OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true setsid "$JAEGER_BIN" \
            --collector.otlp.enabled=true \
            --collector.otlp.http.host-port="127.0.0.1:$JAEGER_OTLP_PORT" \
            --collector.otlp.grpc.host-port="127.0.0.1:$JAEGER_OTLP_GRPC_PORT" \
            --collector.grpc-server.host-port="127.0.0.1:$JAEGER_COLLECTOR_GRPC_PORT" \
            --collector.http-server.host-port="127.0.0.1:$JAEGER_COLLECTOR_HTTP_PORT" \
            --query.http-server.host-port="127.0.0.1:$JAEGER_UI_PORT" \
            --query.grpc-server.host-port="127.0.0.1:$JAEGER_QUERY_GRPC_PORT" \
            --admin.http.host-port="127.0.0.1:$JAEGER_ADMIN_PORT" \
            --memory.max-traces=100000 \
            --log-encoding=console \
            </dev/null >"$DIR/jaeger.log" 2>&1 &
        echo $! > "$DIR/jaeger.pid"
    fi

    if live_pid prometheus "$PROMETHEUS_BIN" >/dev/null; then
        echo "o11y.sh: Prometheus already running (pid $(live_pid prometheus "$PROMETHEUS_BIN"))"
    else
        port_free "$PROMETHEUS_PORT" || die "127.0.0.1:$PROMETHEUS_PORT is in use"
        sed -e "s/127.0.0.1:9464/127.0.0.1:$CHCP_PROMETHEUS_PORT/" \
            -e "s/127.0.0.1:8080/127.0.0.1:$CHCP_API_PORT/" \
            deploy/prometheus/prometheus.yml > "$DIR/prometheus.yml"
        setsid "$PROMETHEUS_BIN" \
            --config.file="$DIR/prometheus.yml" \
            --storage.tsdb.path="$DIR/prometheus-data" \
            --storage.tsdb.retention.time=2d \
            --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
            --web.enable-lifecycle \
            </dev/null >"$DIR/prometheus.log" 2>&1 &
        echo $! > "$DIR/prometheus.pid"
    fi

    wait_http "http://127.0.0.1:$JAEGER_ADMIN_PORT/" "Jaeger"
    wait_http "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "Prometheus"
    cat <<MSG
Jaeger query API: http://127.0.0.1:$JAEGER_UI_PORT/api/traces?service=chcp
                  (built from the Go module, Jaeger has no UI pages; see them as
                  trees with: python3 tests/o11y/jaeger_tree.py --url http://127.0.0.1:$JAEGER_UI_PORT)
Jaeger OTLP/HTTP: http://127.0.0.1:$JAEGER_OTLP_PORT   (UNKEY_CHCP_OTEL_ENDPOINT)
Prometheus:       http://127.0.0.1:$PROMETHEUS_PORT   (scrapes 127.0.0.1:$CHCP_PROMETHEUS_PORT and 127.0.0.1:$CHCP_API_PORT/metrics)
Grafana:          import deploy/grafana/chcp-dashboard.json, data source http://127.0.0.1:$PROMETHEUS_PORT
Run chcp with:    UNKEY_CHCP_OTEL_ENABLED=true UNKEY_CHCP_OTEL_ENDPOINT=http://127.0.0.1:$JAEGER_OTLP_PORT CHCP_PORT=$CHCP_API_PORT
Stop with:        make o11y-stop
MSG
}

stop_one() {
    local name=$1 bin=$2 pid i
    if pid=$(live_pid "$name" "$bin"); then
        kill -TERM "$pid"
        for i in $(seq 1 100); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        [ -d "/proc/$pid" ] && kill -KILL "$pid"
        echo "o11y.sh: stopped $name (pid $pid)"
    fi
    rm -f "$DIR/$name.pid"
}

case "${1:-}" in
start) start ;;
stop)
    stop_one jaeger "$JAEGER_BIN"
    stop_one prometheus "$PROMETHEUS_BIN"
    ;;
status)
    for n in jaeger prometheus; do
        b=$JAEGER_BIN
        [ "$n" = prometheus ] && b=$PROMETHEUS_BIN
        if p=$(live_pid "$n" "$b"); then echo "$n: running (pid $p)"; else echo "$n: stopped"; fi
    done
    ;;
*) die "usage: $0 start|stop|status" ;;
esac
