#!/usr/bin/env bash
#
# polygate's one test command: formatting, lints, then the whole test suite against real
# PostgreSQL, MongoDB-wire and OpenSearch servers started for this run (tests/backends.sh),
# with real PostgreSQL clients installed for the client-compatibility tests (tests/clients.sh).
#
#   tests/run.sh [extra arguments for cargo test]
#
# To use servers of your own, set POLYGATE_TEST_PG_URL, POLYGATE_TEST_MONGO_URL or
# POLYGATE_TEST_ES_URL before running; those servers are then not started. With CI=true,
# tests that miss a server fail instead of being skipped.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

# The tests read CI to decide whether a missing server is a skip or a failure; pass it on
# exactly as given, and leave it unset when it is unset.
if [[ -n ${CI+set} ]]; then
    export CI
fi

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components (rustfmt, clippy)"
if command -v rustup >/dev/null 2>&1; then
    installed=$(rustup component list --installed 2>/dev/null || true)
    missing=()
    for component in rustfmt clippy; do
        grep -q "^$component" <<<"$installed" || missing+=("$component")
    done
    if ((${#missing[@]})); then
        rustup component add "${missing[@]}"
    fi
fi

# shellcheck source=tests/backends.sh
source tests/backends.sh
trap polygate_backends_stop EXIT
# Turn signals into a normal exit so that the EXIT trap stops the servers.
trap 'exit 130' INT
trap 'exit 143' TERM

step "test backends"
polygate_backends_start

# shellcheck source=tests/clients.sh
source tests/clients.sh
step "PostgreSQL clients (psql, psycopg, SQLAlchemy, node-postgres, pgjdbc)"
polygate_clients_install

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test --workspace --locked${*:+ $*}"
log=target/test-output.log
mkdir -p target
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# cargo's last summary is that of the last doc-test run, often empty; close with the totals.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "\ntests: %d passed, %d failed\n", passed, failed }' "$log"

