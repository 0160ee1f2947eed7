#!/usr/bin/env bash
# Bytes on disk per event in the state users are in: EVENTS realistic analytics.js messages
# loaded over HTTP into `itinera serve` on a fresh data directory (8 connections, batches of
# 100; ZIPF > 1 for heavy-tailed persons), the store's size 30 s after the load and after the
# server stopped (its memory rows flushed), then after `itinera compact`, with the store's
# memory by part from /metrics on the way.
# Usage: bench/disk.sh [EVENTS] [ZIPF] [WORKDIR] [PORT]
set -u
events=${1:-10000000}; zipf=${2:-0}; work=${3:-/tmp/itinera-disk}; port=${4:-8670}
cd "$(dirname "$0")/.."
cargo build --release -q -p itinera-bench -p itinera-cli
bin=target/release
rm -rf "$work"; mkdir -p "$work"
$bin/itinera keys create --data "$work/data" --format json >"$work/keys.json"
key=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['write_key'])" "$work/keys.json")
$bin/itinera serve --data "$work/data" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server=$!
sleep 2
$bin/itinera-bench http --url "http://127.0.0.1:$port" --key "$key" --events "$events" --batch 100 \
  --concurrency 8 --realistic --person-zipf "$zipf" | tail -1
sleep 30
size() { du -sb "$work/data/projects/default/$1" | cut -f1; }
echo "30 s after the load: segments $(size seg) bytes, log $(size wal) bytes"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^itinera_store_(events|memory_bytes)'
kill "$server"; wait "$server"
echo "after the server stopped: segments $(size seg) bytes ($(( $(size seg) / events )) per event)"
/usr/bin/time -f "itinera compact: %e s, %M KiB peak" $bin/itinera compact --data "$work/data" 2>&1 | tail -1
$bin/itinera stats --data "$work/data" 2>&1 | grep -E "bytes_per_event|events|persons"
