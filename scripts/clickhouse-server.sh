#!/usr/bin/env bash
# Installs (once) and starts a ClickHouse server for tests and local
# dashboards, if none answers on $CLICKHOUSE_HTTP_PORT (default 8123).
# Prints the HTTP address (what CLICKHOUSE_ADDR takes).
#
# Debian's own clickhouse package is from 2018 (no DateTime64, no window
# functions). This uses ClickHouse 26.9 from the PyPI package chdb-core
# (pinned by version below): the real ClickHouse engine as a
# library, whose clickhouse-local mode opens the real HTTP and native
# listeners and serves until killed. Data lives under $TOOLS/clickhouse/data-<port>
# (or $CLICKHOUSE_DATA_DIR) and survives restarts. User `default`, no password, loopback only: for
# tests and a developer's machine. Production uses a ClickHouse server
# (docker-compose.yml).
#
#   scripts/clickhouse-server.sh         # start if needed; prints http://127.0.0.1:8123
#   scripts/clickhouse-server.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-8123}
TCP_PORT=${CLICKHOUSE_TCP_PORT:-9000}
TOOLS=${FLEET_TOOLS_DIR:-$HOME/.cache/fleet-optimization/tools}
VERSION=26.9.0
DIR=$TOOLS/clickhouse
PIDFILE=$DIR/server-$HTTP_PORT.pid
LOG=$DIR/server-$HTTP_PORT.log

log() { printf 'clickhouse-server: %s\n' "$*" >&2; }

answering() { curl -sf "http://127.0.0.1:$HTTP_PORT/ping" >/dev/null 2>&1; }

# stop: SIGTERM, then wait (up to 10 s, then SIGKILL) until it is gone, so
# that a start right after finds the port free.
if [ "${1:-start}" = stop ]; then
    if [ -f "$PIDFILE" ]; then
        pid=$(cat "$PIDFILE")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$PIDFILE"
    fi
    exit 0
fi

if answering; then
    echo "http://127.0.0.1:$HTTP_PORT"
    exit 0
fi

DATA=${CLICKHOUSE_DATA_DIR:-$DIR/data-$HTTP_PORT}
mkdir -p "$DIR/run-$HTTP_PORT" "$DATA"
if ! "$DIR/venv/bin/python" -c "import chdb._chdb" 2>/dev/null; then
    log "installing ClickHouse (PyPI chdb-core==$VERSION, ~180 MB) into $DIR"
    python3 -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install --quiet --no-deps "chdb-core==$VERSION"
fi

cat >"$DIR/run-$HTTP_PORT/config.xml" <<XML
<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$TCP_PORT</tcp_port>
</clickhouse>
XML
# clickhouse-local reads ./config.xml; the endless query keeps it serving.
cat >"$DIR/serve.py" <<'PY'
import sys
import chdb._chdb as engine

query = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM numbers(100000000) SETTINGS max_block_size=1, "
    "function_sleep_max_microseconds_per_block=0, max_execution_time=0 FORMAT Null"
)
result = engine.query(query, "TabSeparated", path=sys.argv[1])
print("clickhouse stopped:", result.error_message(), flush=True)
PY

log "starting ClickHouse on 127.0.0.1:$HTTP_PORT (log: $LOG)"
# exec: the server replaces the subshell, so no shell keeps this script's
# stdout open (a caller reading it would wait for the server to end).
(cd "$DIR/run-$HTTP_PORT" && exec nohup "$DIR/venv/bin/python" "$DIR/serve.py" "$DATA" \
    >"$LOG" 2>&1 </dev/null) &
echo $! >"$PIDFILE"
for _ in $(seq 1 300); do
    answering && { echo "http://127.0.0.1:$HTTP_PORT"; exit 0; }
    sleep 0.1
done
log "ClickHouse did not start; its log:"
tail -n 20 "$LOG" >&2
exit 1
