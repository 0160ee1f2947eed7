#!/usr/bin/env bash
# Alternating A/B runs of the serving bench on copies of one kept live store (segments and rows
# in memory), so that both builds read the same layout: A B A B …, each on a fresh copy.
# Usage: bench/live_ab.sh KEPT_STORE MODE ROUNDS BENCH_BIN...
#   MODE idle: 31 idle queries, then 31 with APPEND (default 10000) new events before each
#              (every query builds a new snapshot, without a load beside it);
#   MODE load: queries for 30 s while 100k events a second are asked.
# Make the kept store once with e.g.
#   itinera-bench serving --keep --seconds 0 --events 6000000 --runs 3 --data /tmp/live-even
set -euo pipefail
store=$1 mode=$2 rounds=$3
shift 3
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
for r in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    rm -rf "$copy/data"
    cp -a "$store" "$copy/data"
    case $mode in
      idle) args=(--seconds 0 --append-between "${APPEND:-10000}") ;;
      load) args=(--seconds 30) ;;
      *) echo "MODE is idle or load" >&2; exit 2 ;;
    esac
    out=$("$bin" serving --data "$copy/data" --events 0 --keep --runs 31 "${args[@]}" 2>&1)
    echo "round $r $bin: $(echo "$out" | grep -E 'funnel|snapshots|while ingesting' | sed 's/, p99.*//' | tr '\n' ' ')"
  done
done
