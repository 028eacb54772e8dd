#!/usr/bin/env bash
# Builds and tests the Arroyo UDF plugins (udf/arroyo, their own workspace
# with arrow 51) and checks that each cdylib exports Arroyo's entry symbol.
# Part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/../udf/arroyo"
CARGO=${CARGO:-cargo}
$CARGO build --quiet
$CARGO test --quiet
for lib in target/debug/libfleet_udf_zone_of.so target/debug/libfleet_udf_haversine_km.so; do
    [ -f "$lib" ] || { echo "test-arroyo-udfs: $lib was not built" >&2; exit 1; }
    if command -v nm >/dev/null; then
        nm -D --defined-only "$lib" | grep -q ' __run$' \
            || { echo "test-arroyo-udfs: $lib does not export __run" >&2; exit 1; }
    fi
done
echo "arroyo UDF plugins: built, tested, exported"
