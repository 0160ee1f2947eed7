"""Funnels agree with ClickHouse's `windowFunnel` exactly: levels per person over a matrix of
funnels, windows and modes, on a generated journey world and on random data full of equal
timestamps and repeated steps. References: ClickHouse 26 in-process (chDB, every mode) and the
Debian clickhouse-server 18.16 (default mode; it has no modes and takes UInt32 seconds)."""

import json
import os
import random
import shutil
import subprocess
import tempfile
import urllib.request
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import chdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ITINERA_BIN", ROOT / "target" / "debug" / "itinera"))
MODES = ["ordered", "strict_deduplication", "strict_order", "strict_increase"]
IMPLICIT = {"page": "page_view", "screen": "screen_view", "identify": "identify",
            "group": "group", "alias": "alias"}


def run(*args):
    """`itinera ARGS`; generated worlds are dated absolutely, so timestamps up to a century ahead
    are accepted and no test depends on today's date."""
    return subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "ITINERA_LOG": "warn", "ITINERA_MAX_FUTURE_HOURS": "876000"}).stdout


def itinera_levels(data, steps, window_ms, mode):
    args = ["query", "funnel", "--data", str(data), "--window", f"{window_ms / 1000}",
            "--order", mode, "--format", "json"]
    for s in steps:
        args += ["--step", s]
    levels = json.loads(run(*args))["levels"]
    return {k: n for k, n in enumerate(levels) if n}


def ch_condition(steps):
    return ", ".join("event = '%s'" % s.replace("'", "\\'") for s in steps)


def chdb_levels(csv_path, steps, window_ms, mode):
    params = f"{window_ms}" if mode == "ordered" else f"{window_ms}, '{mode}'"
    sql = (f"SELECT level, count() FROM (SELECT person, windowFunnel({params})(ts, {ch_condition(steps)}) "
           f"AS level FROM file('{csv_path}', 'CSVWithNames', 'person String, ts UInt64, event String') "
           f"GROUP BY person) GROUP BY level ORDER BY level")
    out = chdb.query(sql, "CSV").bytes().decode()
    return {int(a): int(b) for a, b in (line.split(",") for line in out.split())}


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("person,ts,event\n")
        for p, ts, e in rows:
            f.write('"%s",%d,"%s"\n' % (p, ts, e.replace('"', '""')))


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(s):
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def stitched_rows(export_path):
    """(person, ts, event) per exported message, persons stitched from messages that carry two ids
    (an independent implementation of identity stitching: union-find, smallest id as the name)."""
    from exported import Stitch

    msgs = [json.loads(line) for line in Path(export_path).read_text().splitlines()]
    stitch = Stitch(msgs)
    return [(stitch.person(m), parse_ts(m["timestamp"]), m.get("event") or IMPLICIT[m["type"]]) for m in msgs]


@pytest.fixture(scope="module")
def world():
    d = Path(tempfile.mkdtemp())
    run("generate", "--out", str(d / "w.jsonl"), "--customers", "1500", "--seed", "7")
    run("import", "--data", str(d / "data"), str(d / "w.jsonl"), "--quiet")
    run("export", "--data", str(d / "data"), str(d / "e.jsonl"))
    write_csv(d / "w.csv", stitched_rows(d / "e.jsonl"))
    yield d
    shutil.rmtree(d)


def random_journeys(distinct_times):
    """Random journeys over five events on a coarse grid of whole seconds: many equal timestamps
    within a person, unless `distinct_times`."""
    d = Path(tempfile.mkdtemp())
    rng = random.Random(3)
    base = 1_700_000_000_000
    rows = []
    with open(d / "t.jsonl", "w") as f:
        for p in range(400):
            n = rng.randint(0, 25)
            seconds = sorted(rng.sample(range(61), n)) if distinct_times else [rng.randint(0, 60) for _ in range(n)]
            for i, sec in enumerate(seconds):
                ts = base + sec * 1000
                ev = rng.choice("abcde")
                rows.append((f"u{p:03d}", ts, ev))
                f.write(json.dumps({"type": "track", "userId": f"u{p:03d}", "event": ev,
                                    "timestamp": iso(ts), "messageId": f"m{p}-{i}"}) + "\n")
    run("import", "--data", str(d / "data"), str(d / "t.jsonl"), "--quiet")
    write_csv(d / "t.csv", rows)
    return d, rows


@pytest.fixture(scope="module")
def ties():
    d, rows = random_journeys(distinct_times=False)
    yield d, rows
    shutil.rmtree(d)


@pytest.fixture(scope="module")
def distinct():
    d, rows = random_journeys(distinct_times=True)
    yield d, rows
    shutil.rmtree(d)


WORLD_FUNNELS = [
    ["page_view", "Product Viewed", "Product Added", "Order Completed"],
    ["page_view", "Product Viewed", "page_view", "Product Viewed"],
    ["Email Opened", "page_view", "Order Completed"],
    ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Survey Responded"],
]


@pytest.mark.parametrize("mode", MODES)
def test_world_funnels_equal_clickhouse(world, mode):
    for steps in WORLD_FUNNELS:
        for window_ms in [3_600_000, 86_400_000, 7 * 86_400_000]:
            ours = itinera_levels(world / "data", steps, window_ms, mode)
            ref = chdb_levels(world / "w.csv", steps, window_ms, mode)
            assert ours == ref, (steps, window_ms, mode)


TIE_FUNNELS = [["a", "b", "c"], ["a", "b", "a", "b"], ["a", "a", "a"], ["b", "c", "d", "e", "a"], ["c"]]


@pytest.mark.parametrize("mode", MODES)
def test_equal_timestamps_and_repeated_steps_equal_clickhouse(ties, mode):
    d, _ = ties
    for steps in TIE_FUNNELS:
        for window_ms in [0, 5_000, 15_000, 60_000]:
            if window_ms == 0:
                continue
            ours = itinera_levels(d / "data", steps, window_ms, mode)
            ref = chdb_levels(d / "t.csv", steps, window_ms, mode)
            assert ours == ref, (steps, window_ms, mode)


def start_clickhouse_1816(tmp):
    if not shutil.which("clickhouse-server"):
        pytest.fail("clickhouse-server is not installed: run scripts/test.sh, which installs it")
    port = subprocess.run([str(ROOT / "tests" / "clickhouse" / "start.sh"), str(tmp), "18423"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return f"http://127.0.0.1:{port}/"


def ch_http(url, sql, data=None):
    body = sql.encode() if data is None else (sql + "\n").encode() + data
    with urllib.request.urlopen(urllib.request.Request(url, data=body)) as r:
        return r.read().decode()


def test_default_mode_equals_clickhouse_18_16_server(distinct):
    """18.16 sorts a person's events by time only, in no defined order for equal times (current
    ClickHouse orders them by step, as Itinera does), so this data has distinct times per person.
    18.16 also lets a touchpoint count for one step only where current ClickHouse (and Itinera)
    count it for every step it matches, so funnels naming one event twice are left to chDB."""
    d, rows = distinct
    tmp = Path(tempfile.mkdtemp())
    url = start_clickhouse_1816(tmp / "ch")
    try:
        version = ch_http(url, "SELECT version()").strip()
        assert version.startswith("18.16"), version
        ch_http(url, "CREATE TABLE t (person String, ts UInt32, event String) ENGINE = MergeTree ORDER BY (person, ts)")
        tsv = "".join(f"{p}\t{ts // 1000}\t{e}\n" for p, ts, e in rows).encode()
        ch_http(url, "INSERT INTO t FORMAT TabSeparated", tsv)
        for steps in [f for f in TIE_FUNNELS if len(set(f)) == len(f)]:
            for window_s in [5, 15, 60]:
                out = ch_http(url, f"SELECT level, count() FROM (SELECT person, windowFunnel({window_s})(ts, "
                                   f"{ch_condition(steps)}) AS level FROM t GROUP BY person) GROUP BY level")
                ref = {int(a): int(b) for a, b in (line.split("\t") for line in out.split("\n") if line)}
                ours = itinera_levels(d / "data", steps, window_s * 1000, "ordered")
                assert ours == ref, (steps, window_s)
    finally:
        pid = (tmp / "ch" / "server.pid")
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()])
        shutil.rmtree(tmp, ignore_errors=True)


def test_retention_on_period_n_equals_clickhouse_retention(world):
    """Day cohorts by the first `Product Viewed`; coming back = a `page_view` N days later.
    ClickHouse's retention(cond1, cond2, …) per person, cond1 = the first cohort touchpoint."""
    n = 7
    ours = json.loads(run("query", "retention", "--data", str(world / "data"), "--cohort", "Product Viewed",
                          "--return", "page_view", "--period", "day", "--periods", str(n), "--format", "json"))
    day = "toDate(toDateTime(intDiv({}, 1000), 'UTC'))"
    conds = ", ".join(f"{day.format('ts')} = {day.format('f')} + {k} AND event = 'page_view'" for k in range(1, n + 1))
    src = f"file('{world / 'w.csv'}', 'CSVWithNames', 'person String, ts UInt64, event String')"
    sql = f"""
        SELECT toString(cohort), count(), {", ".join(f"sum(r[{k + 1}])" for k in range(1, n + 1))}
        FROM (
            SELECT person, {day.format('any(f)')} AS cohort,
                   retention(ts = f AND event = 'Product Viewed', {conds}) AS r
            FROM {src} AS t
            INNER JOIN (SELECT person, min(ts) AS f FROM {src} WHERE event = 'Product Viewed' GROUP BY person) AS first
            USING person
            GROUP BY person)
        GROUP BY cohort ORDER BY cohort"""
    out = chdb.query(sql, "CSV").bytes().decode()
    ref = {}
    for line in out.split():
        cells = line.replace('"', "").split(",")
        ref[cells[0]] = [int(c) for c in cells[1:]]
    mine = {c["cohort"]: c["returned"] for c in ours["cohorts"]}
    assert len(ref) > 50
    assert mine == ref
