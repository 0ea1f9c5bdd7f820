#!/usr/bin/env bash
# MongoDB read benchmarks (see tests/src/bin/bench-mongodb.rs): a full scan by the connector
# versus raw driver iteration of the same pipeline, and a GROUP BY pushed as $group versus
# computed by DataFusion, side by side in one run.
#
#   benches/mongodb.sh [DOCUMENTS] [RUNS]      (default 500000 documents, 5 runs per side)
#
# Starts the same Mongo-wire server as the tests (tests/backends.sh) unless
# POLYGATE_BENCH_MONGO_URL names a server to use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p polygate-tests --bin bench-mongodb
if [ -z "${POLYGATE_BENCH_MONGO_URL:-}" ]; then
  source tests/backends.sh
  trap polygate_backends_stop EXIT
  polygate_backends_start
  POLYGATE_BENCH_MONGO_URL=$POLYGATE_TEST_MONGO_URL
fi
target/release/bench-mongodb "$POLYGATE_BENCH_MONGO_URL" "${1:-500000}" "${2:-5}"
