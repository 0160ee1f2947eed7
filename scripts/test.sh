#!/usr/bin/env bash
# Every test of the project, from a clean checkout: formatting, lints, Rust unit/property/end-to-end
# tests (including the SIGKILL crash harness), fuzzing, the official-SDK and reference tests in
# Python, and the web app in a real browser. The first cargo command builds the web app (web/,
# through crates/itinera-server/build.rs, with npm); a test checks that what the binary embeds
# was built from the sources in web/.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Debian packages: Node.js and npm (the web app's build), ClickHouse 18.16 server (reference engine), chromium (browser tests)"
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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace

echo "== fuzzing the store's decoders (${ITINERA_FUZZ_SECONDS:=60} s per target; fuzz/README.md)"
# cargo-fuzz on the stable toolchain, without sanitizers (Rust's bounds checks turn memory errors
# into panics). A crash fails the run; libFuzzer leaves the input in fuzz/artifacts/TARGET/, to be
# kept in fuzz/regressions/TARGET/ once fixed.
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz --version 0.13.2
for target in log segment; do
  corpus=$(mktemp -d) log=$(mktemp)
  cp fuzz/seeds/"$target"/* "$corpus"/
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O --sanitizer none "$target" "$corpus" -- \
        -max_total_time="$ITINERA_FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1); then
    tail -40 "$log"
    echo "fuzz target $target failed; the crashing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  echo "  $target: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$') inputs, no crash"
  rm -rf "$corpus" "$log"
done

echo "== Python tests: official SDKs, Parquet interop, funnels and retention vs ClickHouse (also on a store built the hard way, while written to), attribution vs ChannelAttribution, CLV vs lifetimes, the OpenAPI document"
scripts/python-env.sh
ITINERA_BIN="$PWD/target/debug/itinera" .venv/bin/python -m pytest -q tests/python

echo "== browser tests: the web app and its journey map, and the survey widget, in Debian's chromium (playwright-core from npm, no browser download)"
(cd tests/browser && npm ci --no-audit --no-fund --silent && ITINERA_BIN="$OLDPWD/target/debug/itinera" node --test)
