#!/usr/bin/env bash
# Load test of the HTTP API (`make test-load`): the release build against
# PostgreSQL (TEST_DATABASE_URL, default the local `test` database) and Redis
# (TEST_REDIS_ADDR, default 127.0.0.1:6379), driven by real HTTP load tools
# from Debian: `hey` at a fixed rate (latency at the target load) and `wrk`
# flat out (throughput). Prints a markdown table.
#
#   RATE=2000 DURATION=10s scripts/load-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2000}          # requests per second for the fixed-rate runs
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-20}
PORT=${PORT:-18090}
DB=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${TEST_REDIS_ADDR:-127.0.0.1:6379}

scripts/dev-deps.sh >/dev/null
for tool in hey wrk; do
    if ! command -v "$tool" >/dev/null; then
        [ "$(id -u)" -eq 0 ] || { echo "load-test: install $tool (apt-get install $tool)" >&2; exit 1; }
        apt-get install -y -qq "$tool" >/dev/null
    fi
done

cargo build --release --quiet --bin fleet-optimization
bin=${CARGO_TARGET_DIR:-target}/release/fleet-optimization
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

# Every API request is authenticated (an API key, looked up by hash and
# cached for KEY_CACHE_TTL) and rate limited per credential: the limit is
# raised so the one load credential measures the service, not the limiter.
KEY="load-test-admin-$(date +%s%N)"
DATABASE_URL=$DB REDIS_ADDR=$REDIS LOG_LEVEL=error ADMIN_API_KEY=$KEY RATE_LIMIT_PER_SECOND=1000000 \
    "$bin" serve --pipeline off --port "$PORT" 2>"$work/server.log" &
server=$!
base="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$base/health" >/dev/null || { echo "load-test: the service did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

api="$base/api/v1/fleet-optimization"
fleet="load-$(date +%s)"
python3 - "$fleet" > "$work/run.json" <<'EOF'
import json, sys
problem = json.load(open("examples/manhattan.json"))
problem["pareto_points"] = 0
print(json.dumps({"fleet_id": sys.argv[1], "name": "load", "problem": problem}))
EOF
run=$(curl -fs -H "x-api-key: $KEY" -H 'content-type: application/json' --data @"$work/run.json" "$api/runs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 1 100); do
    status=$(curl -fs -H "x-api-key: $KEY" "$api/runs/$run" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = succeeded ] && break
    sleep 0.1
done

# hey at a fixed total rate: CONNECTIONS workers x (RATE / CONNECTIONS) each.
per_worker=$(( (RATE + CONNECTIONS - 1) / CONNECTIONS ))
fixed() {  # name, extra hey args...
    local name=$1; shift
    hey -z "$DURATION" -c "$CONNECTIONS" -q "$per_worker" -H "X-API-Key: $KEY" "$@" > "$work/hey.txt"
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/hey.txt")
    p50=$(awk '/ 50% in / {print $3 * 1000}' "$work/hey.txt")
    p99=$(awk '/ 99% in / {print $3 * 1000}' "$work/hey.txt")
    errors=$(awk '/Status code distribution/ {f=1; next} f && /\[/ && $1 !~ /\[2/ {n += $2} END {print n + 0}' "$work/hey.txt")
    flat "$name" "$@"
    printf '| %s | %.0f | %.2f | %.2f | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "$max_rps" "$errors"
}
# wrk flat out (GETs only; POST throughput comes from hey's own run).
flat() {
    local name=$1; shift
    max_rps="-"
    if [ "$1" != "-m" ]; then
        max_rps=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -H "X-API-Key: $KEY" "${@: -1}" | awk '/Requests\/sec/ {printf "%.0f", $2}')
    fi
}

echo "Load test: ${RATE} req/s target for ${DURATION}, ${CONNECTIONS} connections; PostgreSQL + Redis; $(nproc) cores"
echo
echo "| endpoint | achieved req/s (hey) | p50 ms | p99 ms | max req/s (wrk) | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
fixed "GET /runs/{id}" "$api/runs/$run"
fixed "GET /runs?fleet_id&limit=50" "$api/runs?fleet_id=$fleet&limit=50"
fixed "GET /runs/{id}/recommendations" "$api/runs/$run/recommendations"
# POST creates real runs, each solved by the engine: a lower rate.
RATE_POST=${RATE_POST:-200}
per_worker=$(( (RATE_POST + CONNECTIONS - 1) / CONNECTIONS ))
fixed "POST /runs (at ${RATE_POST}/s)" -m POST -T application/json -D "$work/run.json" "$api/runs"
