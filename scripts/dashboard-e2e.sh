#!/usr/bin/env bash
# End-to-end test of the web dashboard (`make dashboard-e2e`; `make test`
# runs it last): builds the service, starts it embedded (SQLite in a fresh
# DATA_DIR, the bundled NYC trips replayed in process at REPLAY_SPEEDUP x
# real time: at 6000 a day of the sparse sample, ~200 trips, passes in about
# 15 s, so idle vehicles build up on the map within the test), creates a
# few one-shot runs of examples/manhattan.json (a Pareto front and the
# seed's metrics to chart), then drives the page in headless Debian Chromium
# with Playwright (scripts/dashboard-e2e.cjs): key entry, more than 100
# zones on the map, at least one move arrow, the Pareto chart, the metric
# sparklines, live updates, no CSP violation. Saves a screenshot to
# SCREENSHOT (docs/dashboard.png) and exits non-zero on any failure.
#
# Installs what is missing: Debian's chromium (apt-get), playwright-core
# pinned, into a cache directory (npm; never a browser download).
#
#   PORT=18080 SCREENSHOT=/tmp/d.png FLEET_BIN=target/release/fleet-optimization scripts/dashboard-e2e.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYWRIGHT_VERSION=1.64.1
CACHE=${DASHBOARD_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleet-optimization/dashboard-e2e}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
SCREENSHOT=${SCREENSHOT:-docs/dashboard.png}
TARGET=${CARGO_TARGET_DIR:-target}

if [ ! -x "$CHROMIUM" ]; then
    echo "installing Debian's chromium" >&2
    sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get install -y chromium >/dev/null || { $sudo apt-get update >/dev/null && $sudo apt-get install -y chromium >/dev/null; }
fi
installed=$(node -p "require('$CACHE/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
    echo "installing playwright-core $PLAYWRIGHT_VERSION into $CACHE" >&2
    mkdir -p "$CACHE"
    npm install --prefix "$CACHE" --no-save --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION"
fi

if [ -n "${FLEET_BIN:-}" ]; then   # a binary built elsewhere
    bin=$FLEET_BIN
else
    cargo build --quiet --bin fleet-optimization
    bin=$TARGET/debug/fleet-optimization
fi

port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
base=http://127.0.0.1:$port
work=$(mktemp -d)
key=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
server=
runs=
cleanup() {
    [ -n "$runs" ] && kill "$runs" 2>/dev/null
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

DATA_DIR=$work ADMIN_API_KEY=$key REPLAY_SPEEDUP=${REPLAY_SPEEDUP:-6000} LOG_LEVEL=warn \
    "$bin" serve --port "$port" >"$work/service.log" 2>&1 &
server=$!
for _ in $(seq 120); do
    curl -fs "$base/health" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { echo "the service exited:" >&2; cat "$work/service.log" >&2; exit 1; }
    sleep 0.5
done
curl -fs "$base/health" >/dev/null || { echo "the service never became healthy" >&2; cat "$work/service.log" >&2; exit 1; }

# One-shot runs, a few seconds apart, so the sparklines (10 s buckets) have
# several points; they go on in the background while the browser works.
run_body=$(python3 -c 'import json; print(json.dumps({"fleet_id": "nyc", "name": "dashboard e2e", "problem": json.load(open("examples/manhattan.json"))}))')
post_run() {
    curl -fs -o /dev/null -H "x-api-key: $key" -H 'content-type: application/json' \
        -d "$run_body" "$base/api/v1/fleet-optimization/runs"
}
post_run || { echo "creating a run failed" >&2; exit 1; }
( for _ in $(seq 10); do sleep 4; post_run || true; done ) &
runs=$!

status=0
BASE_URL=$base API_KEY=$key SCREENSHOT=$SCREENSHOT CHROMIUM=$CHROMIUM NODE_PATH=$CACHE/node_modules \
    node scripts/dashboard-e2e.cjs || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- service log (last 40 lines)" >&2
    tail -n 40 "$work/service.log" >&2
fi
exit "$status"
