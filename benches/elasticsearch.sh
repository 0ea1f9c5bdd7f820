#!/usr/bin/env bash
# Elasticsearch/OpenSearch read benchmarks (see tests/src/bin/bench-elasticsearch.rs): a full
# scan by the connector versus the same point-in-time pages fetched without decoding, and a
# GROUP BY pushed as a composite aggregation versus computed by DataFusion, side by side in
# one run.
#
#   benches/elasticsearch.sh [DOCUMENTS] [RUNS]   (default 500000 documents, 5 runs per side)
#
# Starts the same OpenSearch-compatible server as the tests (tests/backends.sh) unless
# POLYGATE_BENCH_ES_URL names a cluster to use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p polygate-tests --bin bench-elasticsearch
if [ -z "${POLYGATE_BENCH_ES_URL:-}" ]; then
  source tests/backends.sh
  trap polygate_backends_stop EXIT
  polygate_backends_start
  POLYGATE_BENCH_ES_URL=$POLYGATE_TEST_ES_URL
fi
target/release/bench-elasticsearch "$POLYGATE_BENCH_ES_URL" "${1:-500000}" "${2:-5}"
