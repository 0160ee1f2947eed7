#!/usr/bin/env bash
# The funnel comparison of docs/benchmarks.md in one run, on one generated stream:
# Itinera in-process and through the HTTP API (warm), the cold CLI, ClickHouse 26 (chDB),
# ClickHouse 18.16 (Debian server) and DuckDB. Usage: bench/funnel.sh [EVENTS] [WORKDIR]
# ITINERA_BENCH_ARGS is passed to the generator, e.g. "--person-zipf 1.3" for heavy-tailed persons.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000000}
work=${2:-/tmp/itinera-funnel-bench}
mkdir -p "$work"
cargo build --release -q -p itinera-bench -p itinera-cli
# shellcheck disable=SC2086
target/release/itinera-bench ${ITINERA_BENCH_ARGS:-} funnel --data "$work/data" --events "$events" --csv "$work/stream.csv" --runs 11
echo "cold CLI (opens the data directory, loads segments, runs once):"
/usr/bin/time -f "  %e s wall, %M KiB peak" target/release/itinera query funnel --data "$work/data" \
  --step page_view --step "Product Viewed" --step "Product Added" --step "Order Completed" \
  --window 7d --format json >"$work/itinera-answer.json"
scripts/python-env.sh
# fails when any engine's persons per step differ from Itinera's
.venv/bin/python bench/compare_funnel.py "$work/stream.csv" --runs 5 --itinera "$work/itinera-answer.json"
