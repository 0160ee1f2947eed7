"""Bytes on disk per event for the 4-column stream (person, time, event, channel) in ClickHouse
MergeTree ordered by (person, time), on the CSV written by `itinera-bench store --csv FILE`.

ClickHouse 26 runs in-process via chDB (PyPI); ClickHouse 18.16 is Debian's clickhouse-server,
started on loopback by tests/clickhouse/start.sh (18.16 has no DateTime64: time is UInt64 ms).
Usage: python bench/compare_storage.py FILE.csv
"""

import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from chdb import session


def main(path):
    with tempfile.TemporaryDirectory() as d:
        s = session.Session(d)
        s.query("CREATE DATABASE IF NOT EXISTS b")
        s.query(
            "CREATE TABLE b.ev (person UInt64, ts DateTime64(3), event UInt8, channel UInt8) "
            "ENGINE = MergeTree ORDER BY (person, ts)"
        )
        s.query(
            f"INSERT INTO b.ev SELECT person, fromUnixTimestamp64Milli(ts), event, channel "
            f"FROM file('{path}', CSVWithNames, 'person UInt64, ts Int64, event UInt8, channel UInt8')"
        )
        s.query("OPTIMIZE TABLE b.ev FINAL")
        rows = int(str(s.query("SELECT count() FROM b.ev", "CSV")).strip())
        compressed = int(str(s.query(
            "SELECT sum(data_compressed_bytes) FROM system.columns WHERE database = 'b' AND table = 'ev'", "CSV"
        )).strip())
        version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
        print(f"clickhouse {version} (chDB) MergeTree ORDER BY (person, ts), default codecs: "
              f"{rows} events, {compressed / rows:.3f} bytes per event (person, time, event, channel)")


def ch_http(url, sql, data=None):
    body = sql.encode() if data is None else (sql + "\n").encode() + data
    with urllib.request.urlopen(urllib.request.Request(url, data=body)) as r:
        return r.read().decode()


def clickhouse_server(path):
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp())
    port = subprocess.run([str(root / "tests" / "clickhouse" / "start.sh"), str(tmp), "18524"],
                          check=True, capture_output=True, text=True).stdout.strip()
    url = f"http://127.0.0.1:{port}/"
    try:
        ch_http(url, "CREATE TABLE ev (person UInt64, ts UInt64, event UInt8, channel UInt8) "
                     "ENGINE = MergeTree ORDER BY (person, ts)")
        with open(path, "rb") as f:
            f.readline()
            chunk = []
            for line in f:
                chunk.append(line.replace(b",", b"\t"))
                if len(chunk) == 1_000_000:
                    ch_http(url, "INSERT INTO ev FORMAT TabSeparated", b"".join(chunk))
                    chunk = []
            if chunk:
                ch_http(url, "INSERT INTO ev FORMAT TabSeparated", b"".join(chunk))
        ch_http(url, "OPTIMIZE TABLE ev FINAL")
        rows = int(ch_http(url, "SELECT count() FROM ev").strip())
        compressed = int(ch_http(url, "SELECT sum(data_compressed_bytes) FROM system.columns "
                                      "WHERE database = 'default' AND table = 'ev'").strip())
        version = ch_http(url, "SELECT version()").strip()
        print(f"clickhouse {version} (server) MergeTree ORDER BY (person, ts), default codecs: "
              f"{rows} events, {compressed / rows:.3f} bytes per event (person, time, event, channel)")
    finally:
        subprocess.run(["pkill", "-f", f"clickhouse-server.*{tmp}"], check=False)


if __name__ == "__main__":
    main(sys.argv[1])
    clickhouse_server(sys.argv[1])
