#!/usr/bin/env bash
# Alternating A/B runs of the funnel and analyses benches: two builds of itinera-bench on the same
# data directory, A B A B …, so that drift of the machine hits both alike.
# Usage: bench/ab.sh A_BENCH_BIN B_BENCH_BIN DATA_DIR [ROUNDS] [EVENTS]
# Build the old side with e.g.
#   git worktree add /tmp/ab-old <commit> && (cd /tmp/ab-old && CARGO_TARGET_DIR=/tmp/ab-old-target cargo build --release -p itinera-bench)
set -euo pipefail
a=$1 b=$2 data=$3 rounds=${4:-3} events=${5:-10000000}
# the data directory is built once (by B) before the first timed run
"$b" funnel --data "$data" --events "$events" --runs 1 --no-http >/dev/null
for r in $(seq 1 "$rounds"); do
  for side in A B; do
    bin=$a; [ "$side" = B ] && bin=$b
    echo "== round $r, $side ($bin)"
    "$bin" funnel --data "$data" --events "$events" --runs 21 --no-http 2>&1 | grep -i "median\|ms" | head -4
    "$bin" analyses --data "$data" --events "$events" --runs 5 2>&1 | grep -i "median\|ms" | head -4
  done
done
