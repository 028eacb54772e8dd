#!/usr/bin/env bash
# API robustness (`make schemathesis`): schemathesis, property-based tests
# generated from the service's own OpenAPI document, against the real service
# (debug build, pipeline on, so the continuous run and its windows exist), on
# the embedded SQLite store and then on a fresh PostgreSQL database.
#
# Every response is checked (`--checks all`): no 5xx, status code, content
# type, headers and body as documented, schema-violating input rejected,
# undeclared methods 405, resources gone after DELETE, auth not ignored.
# Phases: examples, coverage (boundary and invalid values of every
# parameter), fuzzing, and stateful (sequences of calls chained through links
# schemathesis infers from `Location` headers and the schemas). Strings may
# hold NUL characters. Prints a summary per backend (operations, test cases,
# failures by check, 5xx answers in the service's own log) and exits non-zero
# on any failure.
#
# One check is left out, `positive_data_acceptance` ("every request the
# schema allows gets 2xx"): the contract answers such requests 400/422 where
# JSON Schema cannot say what is valid, so the check would only measure that:
# - an opaque `cursor` is valid only if this service issued it (400);
# - `from`/`to` are RFC 3339 times or epoch milliseconds (400 otherwise);
# - cross-field rules: a one_shot run needs a `problem`, a continuous one
#   takes none; a rebalancing gives `recommendation_ids` or `moves`, not both;
#   a move's `from` differs from its `to`; a zone's `min_vehicles` <= `target`;
#   a travel `matrix_km` is n x n; zone ids are unique (422 naming the field);
# - integers written with a fraction (`34.0`) are wrong types (400), while
#   JSON Schema counts them as integers.
# Every bound the schema can state is stated (lengths, enums, minimum and
# maximum) and checked the other way round by `negative_data_rejection`.
#
# Known with other seeds and more examples (e.g. SEED=1 EXAMPLES=200): the
# heuristic `ensure_resource_availability` ("what POST created is there at
# once") flags GET /runs/{id}/results answering 404 "the run has no result
# yet" right after POST /runs. A run executes asynchronously (a continuous
# one has results only after its first window), so that 404 is the
# documented answer. Schemathesis 4.32.5 cannot turn one check off for one
# operation in its stateful phase, so the check stays on everywhere.
#
#   EXAMPLES=25 SEED=7 BACKENDS="sqlite postgres" scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${EXAMPLES:-25}             # test cases per operation and phase
SEED=${SEED:-20261127}               # fixed: the same run every time
BACKENDS=${BACKENDS:-sqlite postgres}
# The PostgreSQL server: TEST_DATABASE_URL's (the tests' database), else the
# local one; a fresh database is created on it for each run and dropped.
PG_DB_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_URL=${PG_DB_URL%/*}
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fleet-optimization/schemathesis-venv}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ -n "${FLEET_BIN:-}" ]; then   # a binary built elsewhere
    bin=$FLEET_BIN
else
    cargo build --quiet --bin fleet-optimization
    bin=$TARGET/debug/fleet-optimization
fi

out=$TARGET/schemathesis        # reports and service logs, kept for reading
rm -rf "$out"
mkdir -p "$out"
server=
databases=()
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    for db in "${databases[@]}"; do
        psql "$PG_URL/postgres" -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# No crash cache (.schemathesis/ in the working directory): it would replay
# earlier runs' failures first, so a run would depend on the ones before it.
cat >"$out/schemathesis.toml" <<'TOML'
[cache]
enabled = false
TOML

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# An admin JWT (HS256, all fleets, valid for an hour) signed with `$1`.
# Schemathesis authenticates with it rather than with ADMIN_API_KEY: the
# API under test can revoke keys (DELETE /keys/{id}, fed the bootstrap key's
# id by GET /keys), which would lock the rest of the run out; a JWT cannot be
# revoked. X-API-Key is still exercised: ADMIN_API_KEY is set, so the key
# endpoints have a key to list and revoke.
admin_jwt() {
    python3 - "$1" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
part = lambda o: b64(json.dumps(o, separators=(",", ":")).encode())
claims = {"sub": "schemathesis", "role": "admin", "fleets": "*", "exp": int(time.time()) + 3600}
signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
signature = hmac.new(sys.argv[1].encode(), signing_input.encode(), hashlib.sha256).digest()
print(signing_input + "." + b64(signature))
PY
}

# One run against the service on `backend`; prints its summary and returns
# schemathesis's exit code.
run_backend() {
    local backend=$1 port key secret token dir log
    port=$(free_port)
    key=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    token=$(admin_jwt "$secret")
    dir=$out/$backend
    mkdir -p "$dir"
    log=$dir/server.log
    # The rate limit is raised: schemathesis sends far more than 50 req/s
    # with one credential (429 itself is covered by api/tests/access.rs).
    local env=(DATA_DIR="$dir/data" ADMIN_API_KEY="$key" JWT_SECRET="$secret" PORT="$port"
        LOG_LEVEL=info RATE_LIMIT_PER_SECOND=100000 RATE_LIMIT_BURST=100000)
    if [ "$backend" = postgres ]; then
        local db=schemathesis_$(date +%s)_$$
        psql "$PG_URL/postgres" -q -c "CREATE DATABASE $db" >/dev/null
        databases+=("$db")
        env+=(DATABASE_URL="$PG_URL/$db")
    fi
    env "${env[@]}" "$bin" serve --pipeline on >"$dir/stdout" 2>"$log" &
    server=$!
    local healthy=
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { healthy=1; break; }
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$healthy" ]; then
        echo "$backend: the service never became healthy; its log:" >&2
        tail -n 20 "$log" >&2
        return 1
    fi

    local started=$SECONDS rc=0
    "$VENV/bin/schemathesis" --config-file "$out/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
        --header "Authorization: Bearer $token" \
        --generation-with-security-parameters false \
        --generation-allow-x00 true \
        --generation-database none \
        --checks all \
        --exclude-checks positive_data_acceptance \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$EXAMPLES" \
        --seed "$SEED" \
        --workers 1 \
        --request-timeout 40 \
        --no-color \
        --report junit --report-junit-path "$dir/junit.xml" \
        >"$dir/schemathesis.txt" 2>&1 || rc=$?
    local elapsed=$((SECONDS - started))
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    server=

    # Server errors as the service itself logged them (one JSON line per request).
    local requests errors
    requests=$(grep -c '"msg":"request"' "$log" || true)
    errors=$(grep '"msg":"request"' "$log" | grep -c '"status":5[0-9][0-9]' || true)
    grep -q panicked "$log" && { echo "$backend: the service panicked" >&2; rc=1; }
    [ "$errors" -eq 0 ] || rc=1

    echo "== $backend: schemathesis $SCHEMATHESIS_VERSION, seed $SEED, $EXAMPLES examples per operation and phase, ${elapsed}s =="
    # schemathesis's own closing summary (operations, test cases, failures by check).
    sed -n '/^=* SUMMARY =*$/,$p' "$dir/schemathesis.txt"
    echo "service log: $requests requests, $errors answered 5xx"
    if [ "$rc" -ne 0 ]; then
        echo "-- failures ($backend; all in $dir/schemathesis.txt) --"
        sed -n '/^=* FAILURES =*$/,/^=* SUMMARY =*$/p' "$dir/schemathesis.txt" | head -n 400
        grep -E '"status":5[0-9][0-9]|panicked' "$log" | head -n 20 || true
    fi
    summary+=("$(printf '| %s | %s | %s | %s | %s | %s s |' "$backend" \
        "$(grep -oP '^  Tested: \K[0-9]+' "$dir/schemathesis.txt" || echo '?')" \
        "$(grep -oP '^  \K[0-9]+(?= generated)' "$dir/schemathesis.txt" || echo '?')" \
        "$(grep -oP '[0-9]+(?= unique failures)' "$dir/schemathesis.txt" || echo 0)" \
        "$errors" "$elapsed")")
    return "$rc"
}

failed=()
summary=()
for backend in $BACKENDS; do
    run_backend "$backend" || failed+=("$backend")
done
echo
echo "| backend | operations tested | test cases | failures | 5xx in the log | time |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "schemathesis: FAILED on ${failed[*]}"
    exit 1
fi
echo "schemathesis: passed on $BACKENDS"
