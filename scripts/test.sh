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

echo "== SDK tests (official Segment and RudderStack SDKs from PyPI)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
ITINERA_BIN="$PWD/target/debug/itinera" .venv/bin/python -m pytest -q tests/python
