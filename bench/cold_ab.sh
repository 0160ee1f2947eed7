#!/usr/bin/env bash
# Alternating A/B of the cold `itinera query funnel` (whole process, `perf stat -r 10`): each
# build in turn, ROUNDS times, on one store, so that drift of the machine hits all alike.
# Usage: bench/cold_ab.sh ROUNDS DATA_DIR ITINERA_BIN...
set -euo pipefail
rounds=$1 data=$2
shift 2
for r in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    t=$(perf stat -r 10 "$bin" query funnel --data "$data" --step page_view --step "Product Viewed" \
      --step "Product Added" --step "Order Completed" --window 7d --format json 2>&1 >/dev/null |
      grep "time elapsed" | awk '{print $1 " s (± " $3 ")"}')
    echo "round $r $bin: $t"
  done
done
