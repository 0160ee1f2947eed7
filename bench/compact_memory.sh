#!/usr/bin/env bash
# A full compaction's time and peak memory on a copy of a store as a server left it (e.g. the
# WORKDIR of `ZIPF=1.3 bench/serve_memory.sh 10000000 10 WORKDIR`: 100M realistic events,
# segments and holders of background merges). Copies WORKDIR/data to COPY, runs `itinera
# compact` on it under /usr/bin/time (MEMORY_MB sets `compact_memory_mb`), and prints the
# elapsed time, the peak resident memory (VmHWM) and the rows of each segment written.
# Usage: [MEMORY_MB=1024] bench/compact_memory.sh WORKDIR [COPY]
set -euo pipefail
cd "$(dirname "$0")/.."
from=$1
copy=${2:-/tmp/itinera-compact-memory}
cargo build --release -q -p itinera-cli
rm -rf "$copy" && mkdir -p "$copy" && cp -r "$from/data" "$copy/data"
config="$copy/itinera.toml"
printf '[store]\ncompact_memory_mb = %s\n' "${MEMORY_MB:-1024}" >"$config"
/usr/bin/time -v target/release/itinera compact --data "$copy/data" --config "$config" \
  2>"$copy/time.log" >/dev/null
grep -E 'Elapsed|Maximum resident' "$copy/time.log"
for f in "$copy"/data/projects/default/seg/*.seg; do
  python3 - "$f" <<'PY'
import json, struct, sys
f = open(sys.argv[1], 'rb')
f.seek(-16, 2)
n, = struct.unpack('<I', f.read(4))
f.seek(-16 - n, 2)
print(sys.argv[1].rsplit('/', 1)[1], json.loads(f.read(n))['rows'], 'rows')
PY
done
du -sb "$copy/data/projects/default/seg"
