"""`itinera export --format parquet` is standard Parquet: DuckDB and pandas read it, and importing
it again gives back the same messages."""

import json
import os
import subprocess
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ITINERA_BIN", ROOT / "target" / "debug" / "itinera"))


def run(*args):
    return subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "ITINERA_LOG": "warn"}).stdout


def test_parquet_export_reads_in_duckdb_and_pandas_and_round_trips():
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        run("generate", "--out", str(d / "w.jsonl"), "--customers", "400", "--seed", "11")
        truth = json.loads((d / "w.jsonl.truth.json").read_text())
        run("import", "--data", str(d / "a"), str(d / "w.jsonl"), "--quiet")
        run("export", "--data", str(d / "a"), str(d / "e.parquet"), "--format", "parquet")

        con = duckdb.connect()
        n, orders, revenue = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE event = 'Order Completed'), "
            "round(sum(revenue) FILTER (WHERE event = 'Order Completed'), 2) FROM read_parquet(?)",
            [str(d / "e.parquet")]).fetchone()
        assert n == truth["realized"]["events"]
        assert orders == truth["realized"]["orders"]
        assert abs(revenue - truth["realized"]["revenue"]) < 0.01
        kinds = dict(con.execute("SELECT type, count(*) FROM read_parquet(?) GROUP BY 1", [str(d / "e.parquet")]).fetchall())
        assert set(kinds) <= {"track", "identify", "page", "screen", "group", "alias"}
        ts_type = con.execute("SELECT typeof(timestamp) FROM read_parquet(?) LIMIT 1", [str(d / "e.parquet")]).fetchone()[0]
        assert ts_type.startswith("TIMESTAMP")

        df = pd.read_parquet(d / "e.parquet")
        assert len(df) == n
        assert json.loads(df["message"].iloc[0])["messageId"] == df["message_id"].iloc[0]

        run("import", "--data", str(d / "b"), str(d / "e.parquet"), "--quiet")
        run("export", "--data", str(d / "a"), str(d / "a.jsonl"))
        run("export", "--data", str(d / "b"), str(d / "b.jsonl"))

        def load(p):
            out = {}
            for line in p.read_text().splitlines():
                m = json.loads(line)
                m.pop("receivedAt")
                out[m["messageId"]] = m
            return out

        assert load(d / "a.jsonl") == load(d / "b.jsonl")


def test_foreign_parquet_columns_map_to_fields():
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        df = pd.DataFrame({
            "user_id": ["u1", "u2", None],
            "event": ["Store Visit", "Call Completed", "Store Visit"],
            "timestamp": pd.to_datetime(["2025-02-01T10:00:00Z", "2025-02-02T11:00:00Z", "2025-02-03T12:00:00Z"]),
            "store": ["berlin", None, "hamburg"],
        })
        df.to_parquet(d / "visits.parquet")
        out = run("import", "--data", str(d / "x"), str(d / "visits.parquet"), "--map", "store=properties.store",
                  "--quiet", "--output", "json", "--reject", str(d / "rej.jsonl"))
        report = json.loads(out)
        assert report["stored"] == 2 and report["rejected"] == 1
        rej = [json.loads(line) for line in (d / "rej.jsonl").read_text().splitlines()]
        assert rej[0]["line"] == 3 and rej[0]["field"] == "userId"
        run("export", "--data", str(d / "x"), str(d / "x.jsonl"))
        msgs = {m["userId"]: m for m in map(json.loads, (d / "x.jsonl").read_text().splitlines())}
        assert msgs["u1"]["properties"]["store"] == "berlin"
        assert msgs["u1"]["timestamp"] == "2025-02-01T10:00:00.000Z"
