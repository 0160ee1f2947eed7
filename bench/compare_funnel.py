"""The 4-step ordered funnel with a 7-day window on the stream `itinera-bench funnel --csv FILE`
wrote, in the reference engines, timed the same way (median of warm runs):

- ClickHouse 26 in-process (chDB): windowFunnel over MergeTree ORDER BY (person, ts);
- ClickHouse 18.16 (Debian clickhouse-server, started here): windowFunnel, UInt32 seconds;
- DuckDB: the funnel as chained ASOF joins (for each step-1 touchpoint, the next step-2 one at
  or after it, and so on), the best SQL form we know for it.

Each prints the persons per step, which must equal Itinera's: given Itinera's answer to the same
funnel (`itinera query funnel … --format json`) with `--itinera FILE`, the script exits with an
error naming the engine and the counts when any differs. Usage:
    python bench/compare_funnel.py FILE.csv [--runs 5] [--no-clickhouse-server] [--itinera ANSWER.json]
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb
from chdb import session

WINDOW_MS = 7 * 86_400_000
STEPS = [0, 1, 2, 4]  # page_view, Product Viewed, Product Added, Order Completed (EVENTS in the bench)


def timed(fn, runs):
    fn()  # warm
    times = []
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, out


def levels_to_counts(levels):
    return [sum(n for lvl, n in levels.items() if lvl >= k) for k in range(1, len(STEPS) + 1)]


def chdb_events(csv):
    """A chDB session holding the stream as table b.ev (person, ts, event), merged."""
    s = session.Session(tempfile.mkdtemp())
    s.query("CREATE DATABASE IF NOT EXISTS b")
    s.query("CREATE TABLE b.ev (person UInt64, ts UInt64, event UInt8) ENGINE = MergeTree ORDER BY (person, ts)")
    s.query(f"INSERT INTO b.ev SELECT person, ts, event FROM file('{csv}', CSVWithNames, "
            f"'person UInt64, ts Int64, event UInt8, channel UInt8')")
    s.query("OPTIMIZE TABLE b.ev FINAL")
    return s


def chdb_funnel(csv, runs):
    s = chdb_events(csv)
    conds = ", ".join(f"event = {e}" for e in STEPS)
    sql = (f"SELECT level, count() FROM (SELECT person, windowFunnel({WINDOW_MS})(ts, {conds}) AS level "
           f"FROM b.ev GROUP BY person) GROUP BY level SETTINGS max_threads = 2")

    def q():
        out = str(s.query(sql, "CSV")).split()
        return {int(a): int(b) for a, b in (line.split(",") for line in out)}

    ms, levels = timed(q, runs)
    version = str(s.query("SELECT version()", "CSV")).strip().strip('"')
    return f"ClickHouse {version} (chDB) windowFunnel", ms, levels_to_counts(levels)


def ch_http(url, sql, data=None):
    body = sql.encode() if data is None else (sql + "\n").encode() + data
    with urllib.request.urlopen(urllib.request.Request(url, data=body)) as r:
        return r.read().decode()


def clickhouse_server_funnel(csv, runs):
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp())
    port = subprocess.run([str(root / "tests" / "clickhouse" / "start.sh"), str(tmp), "18523"],
                          check=True, capture_output=True, text=True).stdout.strip()
    url = f"http://127.0.0.1:{port}/"
    try:
        ch_http(url, "CREATE TABLE ev (person UInt64, ts UInt32, event UInt8) ENGINE = MergeTree ORDER BY (person, ts)")
        with open(csv, "rb") as f:
            f.readline()
            chunk = []
            for line in f:
                p, ts, e, _ = line.split(b",")
                chunk.append(b"%s\t%d\t%s\n" % (p, int(ts) // 1000, e))
                if len(chunk) == 1_000_000:
                    ch_http(url, "INSERT INTO ev FORMAT TabSeparated", b"".join(chunk))
                    chunk = []
            if chunk:
                ch_http(url, "INSERT INTO ev FORMAT TabSeparated", b"".join(chunk))
        ch_http(url, "OPTIMIZE TABLE ev FINAL")
        conds = ", ".join(f"event = {e}" for e in STEPS)
        sql = (f"SELECT level, count() FROM (SELECT person, windowFunnel({WINDOW_MS // 1000})(ts, {conds}) AS level "
               f"FROM ev GROUP BY person) GROUP BY level")

        def q():
            out = ch_http(url, sql)
            return {int(a): int(b) for a, b in (line.split("\t") for line in out.split("\n") if line)}

        ms, levels = timed(q, runs)
        version = ch_http(url, "SELECT version()").strip()
        return f"ClickHouse {version} (server) windowFunnel", ms, levels_to_counts(levels)
    finally:
        subprocess.run(["kill", (tmp / "server.pid").read_text().strip()])


def duckdb_funnel(csv, runs):
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(f"CREATE TABLE ev AS SELECT person::UBIGINT person, ts::BIGINT ts, event::UTINYINT event "
                f"FROM read_csv('{csv}', header = true) ORDER BY person, ts")
    s = [f"(SELECT person, ts FROM ev WHERE event = {e})" for e in STEPS]
    sql = f"""
        SELECT count(*) FILTER (WHERE lvl >= 1), count(*) FILTER (WHERE lvl >= 2),
               count(*) FILTER (WHERE lvl >= 3), count(*) FILTER (WHERE lvl >= 4)
        FROM (
          SELECT s1.person, max(CASE
              WHEN s4.ts IS NOT NULL AND s4.ts <= s1.ts + {WINDOW_MS} THEN 4
              WHEN s3.ts IS NOT NULL AND s3.ts <= s1.ts + {WINDOW_MS} THEN 3
              WHEN s2.ts IS NOT NULL AND s2.ts <= s1.ts + {WINDOW_MS} THEN 2
              ELSE 1 END) AS lvl
          FROM {s[0]} s1
          ASOF LEFT JOIN {s[1]} s2 ON s1.person = s2.person AND s2.ts >= s1.ts
          ASOF LEFT JOIN {s[2]} s3 ON s2.person = s3.person AND s3.ts >= s2.ts
          ASOF LEFT JOIN {s[3]} s4 ON s3.person = s4.person AND s4.ts >= s3.ts
          GROUP BY s1.person)"""

    def q():
        return list(con.execute(sql).fetchone())

    ms, counts = timed(q, runs)
    return f"DuckDB {duckdb.__version__} chained ASOF joins", ms, counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-clickhouse-server", action="store_true")
    ap.add_argument("--itinera", help="Itinera's answer to the same funnel (JSON): counts must equal it")
    a = ap.parse_args()
    results = [chdb_funnel(a.csv, a.runs), duckdb_funnel(a.csv, a.runs)]
    if not a.no_clickhouse_server:
        results.append(clickhouse_server_funnel(a.csv, a.runs))
    for name, ms, counts in results:
        print(json.dumps({"engine": name, "median_ms": round(ms, 1), "counts": counts}))
    if a.itinera:
        ours = [s["count"] for s in json.loads(Path(a.itinera).read_text())["steps"]]
        wrong = [(name, counts) for name, _, counts in results if counts != ours]
        if wrong:
            raise SystemExit(f"counts differ from Itinera's {ours}: {wrong}")
        print(json.dumps({"engine": "Itinera", "counts": ours, "equal": True}))


if __name__ == "__main__":
    main()
