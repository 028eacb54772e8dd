#!/usr/bin/env bash
# Soak test (`make soak`): the release service consuming telemetry from the
# real broker at a steady rate for DURATION seconds, sampled every SAMPLE
# seconds: resident memory (and its anonymous part: heap, without the
# binary's code pages), open file descriptors, windows persisted and dead
# letters. Prints a table and whether memory and descriptors stayed flat over
# the last third of the run (after warm-up); exits 1 if not.
#
# Event time runs faster than wall time: the generator puts 100 events in
# each second of event time, so at RATE=2000 a second of wall time is 20 s of
# event time and a WINDOW_SECONDS=300 window closes about every 15 s (40
# windows in 10 minutes at most). The last line says how far event time got,
# i.e. about the rate really sustained end to end (producer, broker, service).
#
#   DURATION=600 RATE=2000 WINDOW_SECONDS=300 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-600}   # seconds
RATE=${RATE:-2000}          # telemetry messages per second
SAMPLE=${SAMPLE:-10}        # seconds between samples
WINDOW=${WINDOW_SECONDS:-300}  # window length, seconds of event time
EVENTS_PER_EVENT_SECOND=100 # the generator's default density (replay --events-per-hour 360000)
PORT=${PORT:-18091}
TARGET=${CARGO_TARGET_DIR:-target}

# A fresh broker (the test broker keeps data in memory): the service's
# consumer group must not resume an earlier soak's backlog, whose later event
# times would make this run's telemetry late.
scripts/kafka-broker.sh stop
brokers=$(scripts/kafka-broker.sh)
cargo build --release --quiet --bin fleet-optimization
bin=$TARGET/release/fleet-optimization
work=$(mktemp -d)
trap 'kill "$server" "$producer" 2>/dev/null || true; rm -rf "$work"' EXIT
key="soak-admin-$(date +%s%N)"

DATA_DIR=$work KAFKA_BROKERS=$brokers ADMIN_API_KEY=$key LOG_LEVEL=warn WINDOW_SECONDS=$WINDOW \
    "$bin" serve --port "$PORT" 2>"$work/server.log" >/dev/null &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done

KAFKA_BROKERS=$brokers "$bin" replay --to-kafka --generate $((RATE * (DURATION + 30))) \
    --rate "$RATE" --seed "$(date +%s)" >"$work/producer.log" 2>&1 &
producer=$!

metric() {  # the value of a Prometheus counter, 0 if absent
    curl -fs "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}' | tail -n1 | grep . || echo 0
}

echo "Soak: $RATE msg/s for ${DURATION}s through $brokers; $(nproc) cores"
echo
echo "| t (s) | RSS MiB | anon MiB | open fds | windows persisted | dead letters |"
echo "|---:|---:|---:|---:|---:|---:|"
samples=()
for ((t = SAMPLE; t <= DURATION; t += SAMPLE)); do
    sleep "$SAMPLE"
    kill -0 "$server" 2>/dev/null || { echo "soak: the service died; its log:" >&2; tail -n 20 "$work/server.log" >&2; exit 1; }
    rss=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status")
    anon=$(awk '/^RssAnon/ {printf "%.1f", $2 / 1024}' "/proc/$server/status")
    fds=$(ls "/proc/$server/fd" | wc -l)
    windows=$(metric pipeline_windows_total)
    dead=$(metric pipeline_dead_letters_total)
    echo "| $t | $rss | $anon | $fds | $windows | $dead |"
    samples+=("$rss $fds")
done

echo
echo "event time: $windows windows of ${WINDOW}s = $((windows * WINDOW))s, i.e. at least $((windows * WINDOW * EVENTS_PER_EVENT_SECOND / DURATION)) msg/s sustained (of $RATE asked)"

# Flat: over the last third of the run, resident memory grows by at most 3 %
# and the open descriptors by at most 2 (start and end of that third compared).
printf '%s\n' "${samples[@]}" | awk '
    { rss[NR] = $1; fds[NR] = $2 }
    END {
        n = NR; b = int(2 * n / 3) + 1
        grow = (rss[n] - rss[b]) / rss[b]
        flat = (grow <= 0.03 && fds[n] <= fds[b] + 2)
        printf "\nlast third (samples %d-%d): RSS %.1f -> %.1f MiB (%+.1f %%), fds %d -> %d: %s\n", b, n, rss[b], rss[n], 100 * grow, fds[b], fds[n], flat ? "flat" : "GROWING"
        exit flat ? 0 : 1
    }'
