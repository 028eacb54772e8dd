#!/usr/bin/env bash
# Fuzzes the telemetry decoders and the problem-file parser (fuzz/, cargo-fuzz
# with libFuzzer and AddressSanitizer on the nightly toolchain): each target
# runs for FUZZ_SECONDS (default 60) from its committed seeds (fuzz/seeds/) and
# the corpus earlier runs grew (fuzz/corpus/, not committed), then one summary
# line per target is printed. Exits non-zero if any target crashed (a panic,
# a failed property, a sanitizer report, a timeout or out-of-memory); the
# crashing input is in fuzz/artifacts/<target>/ and the line says how to rerun it.
#
#   scripts/fuzz.sh                               # both targets, 60 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh telemetry_decode
#
# Environment: FUZZ_SECONDS, FUZZ_TOOLCHAIN (default nightly), FUZZ_NICE
# (niceness, default 10: other builds on the machine keep their share).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
PATH=$PATH:${CARGO_HOME:-$HOME/.cargo}/bin

seconds=${FUZZ_SECONDS:-60}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
nice_level=${FUZZ_NICE:-10}
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(telemetry_decode problem_file)
fi

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz: installing the $toolchain toolchain (cargo-fuzz needs it for the sanitizer flags)"
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    nice -n "$nice_level" cargo install cargo-fuzz --locked
fi

start=$SECONDS
for t in "${targets[@]}"; do
    nice -n "$nice_level" cargo "+$toolchain" fuzz build "$t" 2>&1 | tail -n 1 ||
        { echo "fuzz: building $t failed"; exit 1; }
done
echo "fuzz: build took $((SECONDS - start)) s"

logs=target/fuzz-logs
mkdir -p "$logs"
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="$logs/$t.log"
    rc=0
    # Input timeout 10 s: a hang is a failure, not a stalled run.
    nice -n "$nice_level" cargo "+$toolchain" fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    field() { sed -nE "s/.* $1: ([0-9]+).*/\\1/p" <<<"$last"; }
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
    execs=${execs:-$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")}
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    crashes=0
    if [ "$rc" -ne 0 ] || [ -n "$artifact" ]; then
        crashes=1
        failed+=("$t")
    fi
    cov=$(field cov) ft=$(field ft) corp=$(field corp)
    printf 'fuzz %-17s %ss: %s execs, %s exec/s, cov %s, ft %s, corpus %s, crashes %d\n' \
        "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
    if [ "$crashes" -ne 0 ]; then
        { grep -m 1 -A 1 "panicked at" "$log" || true; grep -m 1 "ERROR: " "$log" || true; } |
            sed 's/^/    /'
        echo "    full log: fuzz/$log"
        [ -n "$artifact" ] &&
            echo "    rerun: (cd fuzz && cargo +$toolchain fuzz run $t ${artifact#"$PWD/"})"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: no crashes"
