"""Bytes on disk per event for full stored messages in ClickHouse 26 (chDB, in-process), on the
JSON lines written by `itinera export`: the reference for Itinera's `bytes_per_event` with every
message kept (docs/benchmarks.md, issue 19 goal 4).

Three tables, each MergeTree ORDER BY (person, ts), merged to one part (OPTIMIZE FINAL):
- `text`: the person, the time and the whole message as text (lossless, like Itinera), with
  ZSTD(3) and with ZSTD(6) (the level Itinera compresses messages at);
- `split`: the message id, the four times and the event as typed columns and the rest of the
  message as text (what a ClickHouse schema for Segment messages looks like), ZSTD(3).

Usage: python bench/compare_messages.py EXPORT.jsonl
"""

import sys
import tempfile

from chdb import session


def main(path):
    with tempfile.TemporaryDirectory() as d:
        s = session.Session(d)
        s.query("CREATE DATABASE IF NOT EXISTS b")
        src = f"file('{path}', LineAsString, 'line String')"
        person = "coalesce(nullIf(JSONExtractString(line, 'userId'), ''), JSONExtractString(line, 'anonymousId'))"
        ts = "parseDateTime64BestEffort(JSONExtractString(line, 'timestamp'), 3)"
        tables = {}
        for name, level in [("text_zstd3", 3), ("text_zstd6", 6)]:
            codec = f" CODEC(ZSTD({level}))"
            s.query(
                f"CREATE TABLE b.{name} (person String{codec}, ts DateTime64(3){codec}, "
                f"message String{codec}) ENGINE = MergeTree ORDER BY (person, ts)"
            )
            s.query(f"INSERT INTO b.{name} SELECT {person}, {ts}, line FROM {src}")
            tables[name] = f"whole message as text, ZSTD({level})"
        times = ["timestamp", "receivedAt", "sentAt", "originalTimestamp"]
        cols = ", ".join(f"`{t}` DateTime64(3) CODEC(Delta, ZSTD(3))" for t in times)
        s.query(
            "CREATE TABLE b.split (person String CODEC(ZSTD(3)), message_id String CODEC(ZSTD(3)), "
            f"{cols}, event LowCardinality(String), rest String CODEC(ZSTD(3))) "
            "ENGINE = MergeTree ORDER BY (person, timestamp)"
        )
        picks = ", ".join(
            f"parseDateTime64BestEffortOrZero(JSONExtractString(line, '{t}'), 3)" for t in times
        )
        # the rest: the message without its id and times (as text; the typed columns hold them)
        rest = "line"
        for key in ["messageId"] + times:
            rest = f"replaceRegexpOne({rest}, '\"{key}\":\"[^\"]*\",?', '')"
        s.query(
            f"INSERT INTO b.split SELECT {person}, JSONExtractString(line, 'messageId'), {picks}, "
            f"JSONExtractString(line, 'event'), {rest} FROM {src}"
        )
        tables["split"] = "id, four times (Delta, ZSTD(3)), event as columns, the rest as text, ZSTD(3)"
        version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
        for name, what in tables.items():
            s.query(f"OPTIMIZE TABLE b.{name} FINAL")
            rows = int(str(s.query(f"SELECT count() FROM b.{name}", "CSV")).strip())
            compressed = int(str(s.query(
                "SELECT sum(data_compressed_bytes) FROM system.columns "
                f"WHERE database = 'b' AND table = '{name}'", "CSV"
            )).strip())
            print(f"clickhouse {version} (chDB) {what}: {rows} events, "
                  f"{compressed / rows:.1f} bytes per event")


if __name__ == "__main__":
    main(sys.argv[1])
