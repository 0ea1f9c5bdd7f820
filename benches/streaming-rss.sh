#!/usr/bin/env bash
# Streaming benchmark: psql fetches every row of a generated CSV of at least 1 GB through a
# release build of `polygate serve`; the gateway's peak resident memory (VmHWM) is reported.
# A streaming gateway holds a few batches at a time, whatever the size of the result.
#
#   benches/streaming-rss.sh [SIZE_MB]      (default 1100)
#
# The CSV is generated under target/bench/ (never committed) and reused by later runs.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-1100}
work=target/bench/streaming
mkdir -p "$work/data"
csv="$work/data/rows.csv"

if [ ! -f "$csv" ] || [ "$(( $(stat -c %s "$csv") / 1000000 ))" -lt "$size_mb" ]; then
  echo "generating ${size_mb} MB of CSV in $csv"
  python3 - "$csv" "$size_mb" <<'PY'
import sys
path, size_mb = sys.argv[1], int(sys.argv[2])
target = size_mb * 1_000_000
names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
with open(path, "w", buffering=1 << 22) as out:
    out.write("id,user_id,name,amount,created_at,note\n")
    written, i, chunk = 0, 0, []
    while written < target:
        for _ in range(100_000):
            line = f"{i},{i % 100_003},{names[i % 8]}-{i % 977},{(i % 100_000) / 100:.2f},2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d},note number {i} for the streaming benchmark\n"
            chunk.append(line)
            i += 1
        block = "".join(chunk)
        out.write(block)
        written += len(block)
        chunk = []
print(f"{i} rows, {written / 1e6:.0f} MB")
PY
fi

cat > "$work/catalog.toml" <<'TOML'
[sources.big]
kind = "files"
root = "data"
TOML

cargo build --release -q -p polygate
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/polygate serve --catalog "$work/catalog.toml" --listen "127.0.0.1:$port" 2> "$work/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  grep -q "polygate is serving" "$work/serve.log" && break
  sleep 0.1
done

rows_expected=$(( $(wc -l < "$csv") - 1 ))
start=$(date +%s.%N)
rows=$(psql -X -h 127.0.0.1 -p "$port" -U bench -d polygate -At \
  -c "SELECT * FROM big.rows" | wc -l)
end=$(date +%s.%N)
peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
size_bytes=$(stat -c %s "$csv")

echo "csv:        $csv ($(( size_bytes / 1000000 )) MB, $rows_expected rows)"
echo "fetched:    $rows rows by psql in $(echo "$end - $start" | bc) s"
echo "peak RSS:   $(( peak_kb / 1024 )) MB (VmHWM of polygate serve)"
echo "machine:    $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB"
if [ "$rows" -ne "$rows_expected" ]; then
  echo "error: psql fetched $rows rows, the file has $rows_expected" >&2
  exit 1
fi
