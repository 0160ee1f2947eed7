"""Bytes on disk per event for the 4-column stream (person, time, event, channel) in ClickHouse
MergeTree ordered by (person, time), on the CSV written by `itinera-bench store --csv FILE`.

ClickHouse 26 runs in-process via chDB (PyPI). Usage: python bench/compare_storage.py FILE.csv
"""

import sys
import tempfile

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


if __name__ == "__main__":
    main(sys.argv[1])
