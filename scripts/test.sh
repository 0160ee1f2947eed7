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

echo "== Debian packages: ClickHouse 18.16 server (reference engine) and chromium (browser tests)"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
MISSING=""
command -v clickhouse-server >/dev/null || MISSING="$MISSING clickhouse-server clickhouse-client"
[ -x /usr/bin/chromium ] || MISSING="$MISSING chromium"
command -v npm >/dev/null || MISSING="$MISSING nodejs npm"
if [ -n "$MISSING" ]; then
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING >/dev/null
fi

echo "== Python tests: official SDKs, Parquet interop, funnels vs ClickHouse, attribution vs ChannelAttribution, CLV vs lifetimes"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
ITINERA_BIN="$PWD/target/debug/itinera" .venv/bin/python -m pytest -q tests/python

echo "== browser tests: the survey widget in Debian's chromium (playwright-core from npm, no browser download)"
(cd tests/browser && npm ci --no-audit --no-fund --silent && ITINERA_BIN="$OLDPWD/target/debug/itinera" node --test)
