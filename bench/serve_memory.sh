#!/usr/bin/env bash
# A server's memory in the state users are in: `itinera serve` on a fresh data directory,
# loaded over HTTP with realistic analytics.js messages (LOADS loads of EVENTS each, 8
# connections, batches of 100), then idle, then queried. Prints after each load and at the end
# the resident memory (VmRSS, VmHWM from /proc) and the store's memory by part from /metrics
# (itinera_store_memory_bytes). Usage: [ZIPF=1.3] bench/serve_memory.sh [EVENTS] [LOADS] [WORKDIR]
# [PORT]; ZIPF > 1 makes the persons heavy-tailed (itinera-bench http --person-zipf).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-5000000}
loads=${2:-1}
work=${3:-/tmp/itinera-serve-memory}
port=${4:-8640}
cargo build --release -q -p itinera-bench -p itinera-cli
rm -rf "$work" && mkdir -p "$work"
target/release/itinera keys create --data "$work/data" --format json >"$work/keys.json"
key() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/keys.json" "$1"; }
target/release/itinera serve --data "$work/data" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 2
resident() { grep -E 'VmRSS|VmHWM' "/proc/$server/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }
memory() { curl -s "http://127.0.0.1:$port/metrics" | grep -E '^itinera_store_(memory_bytes|events)' || true; }
for k in $(seq 1 "$loads"); do
  target/release/itinera-bench http --url "http://127.0.0.1:$port" --key "$(key write_key)" \
    --events "$events" --batch 100 --concurrency 8 --realistic --person-zipf "${ZIPF:-0}" | tail -1
  echo "after load $k: $(resident)"
done
sleep 60
echo "idle 60 s after the last load: $(resident)"
memory
funnel='{"steps":[{"match":{"event":"page_view"}},{"match":{"event":"Product Viewed"}},{"match":{"event":"Product Added"}},{"match":{"event":"Order Completed"}}],"window":"7d"}'
for _ in $(seq 11); do
  curl -s -o /dev/null -w "funnel %{time_total} s\n" -H "Authorization: Bearer $(key read_token)" \
    -H 'content-type: application/json' -d "$funnel" "http://127.0.0.1:$port/api/v1/funnel"
done
echo "after 11 funnels: $(resident)"
memory
sleep 15
echo "15 s after the funnels: $(resident)"
du -sb "$work/data/projects/default/seg" "$work/data/projects/default/wal"
