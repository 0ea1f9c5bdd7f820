#!/usr/bin/env bash
# PostgreSQL read benchmarks (see tests/src/bin/bench-postgres.rs): a full scan by the
# connector versus psql's binary COPY, and a GROUP BY through the gateway versus psql on
# PostgreSQL, side by side in one run.
#
#   benches/postgres.sh [ROWS] [RUNS]      (default 5000000 rows, 5 runs per side)
#
# Starts the same private PostgreSQL cluster as the tests (tests/backends.sh) unless
# POLYGATE_BENCH_PG_URL names a server to use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p polygate-tests --bin bench-postgres
if [ -z "${POLYGATE_BENCH_PG_URL:-}" ]; then
  source tests/backends.sh
  trap polygate_backends_stop EXIT
  polygate_backends_start
  POLYGATE_BENCH_PG_URL=$POLYGATE_TEST_PG_URL
fi
target/release/bench-postgres "$POLYGATE_BENCH_PG_URL" "${1:-5000000}" "${2:-5}"
