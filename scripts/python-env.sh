#!/usr/bin/env bash
# The Python environment of the tests and benchmarks (.venv), installed from the complete lock
# with hashes (tests/python/requirements.txt, compiled from requirements.in). The environment is
# built again from nothing whenever the lock changes, so nothing unpinned lingers in it.
set -euo pipefail
cd "$(dirname "$0")/.."
lock=tests/python/requirements.txt
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ "$(cat .venv/.lock-sha256 2>/dev/null)" != "$want" ]; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r "$lock"
  echo "$want" > .venv/.lock-sha256
fi
