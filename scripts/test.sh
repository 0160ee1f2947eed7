#!/usr/bin/env bash
# Every test of the project, from a clean checkout: formatting, lints, Rust unit/property/end-to-end
# tests (including the SIGKILL crash harness), and the official-SDK tests in Python.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace

echo "== reference engines (ClickHouse 18.16 server from Debian; chDB and DuckDB come from PyPI)"
if ! command -v clickhouse-server >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
fi

echo "== Python tests: official Segment and RudderStack SDKs, Parquet interop, funnels vs ClickHouse"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
ITINERA_BIN="$PWD/target/debug/itinera" .venv/bin/python -m pytest -q tests/python
