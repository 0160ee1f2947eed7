#!/usr/bin/env bash
# Alternating A/B of HTTP ingestion: the servers of two builds (A, B), each on a fresh data
# directory, loaded by this checkout's load generator with the same realistic messages, A B A B
# …, so that drift of the machine hits both alike. Prints events/s, p99 and the segments' bytes
# per event after the server stopped.
# Usage: bench/ab_ingest.sh A_ITINERA_BIN B_ITINERA_BIN [EVENTS] [ROUNDS]
set -u
a=$1 b=$2 events=${3:-2000000} rounds=${4:-3}
cd "$(dirname "$0")/.."
cargo build --release -q -p itinera-bench
load=target/release/itinera-bench
for r in $(seq 1 "$rounds"); do
  for side in A B; do
    bin=$a; [ "$side" = B ] && bin=$b
    work=/tmp/itinera-ab-ingest-$side; rm -rf "$work"; mkdir -p "$work"
    "$bin" keys create --data "$work/data" --format json >"$work/keys.json"
    key=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['write_key'])" "$work/keys.json")
    "$bin" serve --data "$work/data" --listen 127.0.0.1:8660 >"$work/serve.log" 2>&1 &
    server=$!
    sleep 2
    result=$($load http --url http://127.0.0.1:8660 --key "$key" --events "$events" --batch 100 \
      --concurrency 8 --realistic | tail -1)
    kill "$server"; wait "$server"
    seg=$(du -sb "$work/data/projects/default/seg" | cut -f1)
    echo "round $r $side: $(echo "$result" | grep -o '= [0-9]* events/s'), $(echo "$result" | grep -o 'p99 [0-9.]* ms'), segments $((seg / events)) bytes per event after the server stopped"
  done
done
