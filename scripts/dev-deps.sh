#!/usr/bin/env bash
# Checks, and where missing installs, what building and testing the project
# needs (`make dev-deps`; `make test` runs it first). Idempotent and quick when
# everything is present: it only looks things up. Installs only what is missing:
# system packages with apt-get when running as root (Debian/Ubuntu), the Rust
# toolchain with rustup. Otherwise it names what is missing and exits 1.
#
# Needed today (PostgreSQL and Redis too, for the store, cache and API tests):
#   - a C toolchain (cc, ar): Rust's linker on Linux;
#   - a C++ compiler (c++ / g++, or $CXX): compiles LEMON for the test/bench-only
#     crate engine/lemon-reference (the engine's reference solver);
#   - cargo + rustc >= the workspace's rust-version, with rustfmt and clippy
#     (`make lint`).
set -euo pipefail

cd "$(dirname "$0")/.."

log() { printf 'dev-deps: %s\n' "$*"; }
die() { printf 'dev-deps: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# Is version $1 >= version $2 (dotted numbers)?
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

APT_UPDATED=
apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! have apt-get; then
        die "missing: $* (install them, e.g. \`sudo apt-get install -y $*\`, then re-run)"
    fi
    log "installing with apt-get: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- C / C++ toolchain --------------------------------------------------------
cxx=${CXX:-c++}
if ! have cc || ! have ar || ! have "$cxx"; then
    apt_install build-essential
fi
have cc && have ar || die "no C toolchain (cc, ar) after installing build-essential"
have "$cxx" || die "no C++ compiler '$cxx' (set CXX or install g++)"

# --- Rust ---------------------------------------------------------------------
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
case ":$PATH:" in *":$cargo_bin:"*) ;; *) PATH=$PATH:$cargo_bin ;; esac

if ! have cargo; then
    if ! have rustup; then
        have curl || apt_install curl ca-certificates
        log "installing the Rust toolchain with rustup (stable, minimal profile)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --no-modify-path --profile minimal --component rustfmt,clippy
    else
        rustup toolchain install stable --profile minimal --component rustfmt,clippy
    fi
    have cargo || die "cargo still not found (looked in PATH and $cargo_bin)"
fi

need_rust=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
have_rust=$(rustc --version | awk '{print $2}')
if [ -n "$need_rust" ] && ! version_ge "${have_rust%%-*}" "$need_rust"; then
    if have rustup; then
        log "rustc $have_rust is older than the required $need_rust; updating stable"
        rustup update stable --no-self-update
        have_rust=$(rustc --version | awk '{print $2}')
        version_ge "${have_rust%%-*}" "$need_rust" ||
            die "rustc $have_rust is older than $need_rust (is a pinned toolchain overriding stable?)"
    else
        die "rustc $have_rust is older than the required $need_rust"
    fi
fi

for tool in fmt clippy; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        have rustup || die "cargo $tool is missing (needed by \`make lint\`)"
        component=$([ "$tool" = fmt ] && echo rustfmt || echo clippy)
        log "adding rustup component $component"
        rustup component add "$component"
    fi
done

# --- PostgreSQL ------------------------------------------------------------------
# The store and API tests talk to a real server: TEST_DATABASE_URL, default the
# local cluster (127.0.0.1:5432, trust auth, database `test`). Start it if it is
# installed but down; install it only if it is missing and we are root.
pg_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_up() { have pg_isready && pg_isready -q -d "$pg_url"; }
if ! pg_up; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1 && [ -z "${TEST_DATABASE_URL:-}" ]; then
        apt_install postgresql
    fi
    if have pg_ctlcluster && ls /etc/postgresql/*/main >/dev/null 2>&1; then
        version=$(ls /etc/postgresql | sort -V | tail -n1)
        log "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 30); do pg_up && break; sleep 1; done
    fi
    pg_up || die "PostgreSQL does not answer at $pg_url (set TEST_DATABASE_URL to a reachable database)"
fi

# --- Redis -------------------------------------------------------------------------
# The cache tests talk to a real Redis: TEST_REDIS_ADDR, default 127.0.0.1:6379.
redis_addr=${TEST_REDIS_ADDR:-127.0.0.1:6379}
redis_up() { (exec 3<>"/dev/tcp/${redis_addr%:*}/${redis_addr##*:}" && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ! redis_up; then
    have redis-server || apt_install redis-server
    log "starting Redis on $redis_addr"
    redis-server --daemonize yes --bind 127.0.0.1 --port "${redis_addr##*:}" --save "" --appendonly no >/dev/null || true
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
    redis_up || die "Redis does not answer at $redis_addr (set TEST_REDIS_ADDR to a reachable server)"
fi

# --- Python venv -------------------------------------------------------------------
# scripts/clickhouse-server.sh installs ClickHouse from PyPI into a virtualenv.
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt_install python3-venv
fi

log "ok (rustc $have_rust, $("$cxx" --version | head -n1), PostgreSQL at ${pg_url##*@}, Redis at $redis_addr)"
