"""Calendar periods in named time zones equal ClickHouse's: retention cohorts and returns, revenue
per period and NPS per period, by day, ISO week (Monday first) and month, in zones with daylight
saving time (Europe/Berlin, America/New_York), switches at local midnight, where the date itself
moves (America/Havana, Asia/Beirut, America/Santiago), a 30-minute switch (Australia/Lord_Howe), a
half-hour offset with DST (America/St_Johns) and none (Asia/Kolkata). Every touchpoint sits on an
edge: seconds and minutes around the 2024 daylight-saving switches of these zones and around local
midnights that start a week or a month. Reference: ClickHouse 26 in-process (chDB), with
`toDate`, `toStartOfWeek(…, 1)` and `toStartOfMonth` of `toDateTime(…, zone)`."""

import json
import random
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import chdb
import pytest

from test_funnel_reference import iso, run

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata",
         "America/Havana", "Asia/Beirut", "America/Santiago"]
PERIODS = {"day": 14, "week": 8, "month": 5}
START = {"day": "toDate({dt})", "week": "toStartOfWeek({dt}, 1)", "month": "toStartOfMonth({dt})"}
DIFF = {"day": "dateDiff('day', {a}, {b})", "week": "intDiv(dateDiff('day', {a}, {b}), 7)",
        "month": "dateDiff('month', {a}, {b})"}


def edges():
    """UTC instants (ms) next to 2024's DST switches and local week and month starts of ZONES."""
    centres = set()
    for name in ZONES:
        tz = ZoneInfo(name)
        t = datetime(2024, 1, 1, tzinfo=timezone.utc)
        prev = t.astimezone(tz).utcoffset()
        while t.year == 2024:
            t += timedelta(minutes=30)
            off = t.astimezone(tz).utcoffset()
            if off != prev:
                centres.add(t)
                prev = off
        for month in range(1, 13):
            centres.add(datetime(2024, month, 1, tzinfo=tz).astimezone(timezone.utc))
        day = datetime(2024, 1, 1, tzinfo=tz)
        while day.year == 2024:
            if day.weekday() == 0:
                centres.add(day.astimezone(timezone.utc))
            day = (day + timedelta(days=1)).replace(hour=0)
    out = set()
    for c in centres:
        for delta in (-5400, -3599, -60, -1, 0, 1, 60, 3599, 5400):
            out.add(int((c + timedelta(seconds=delta)).timestamp()) * 1000)
    return sorted(out)


@pytest.fixture(scope="module")
def world():
    d = Path(tempfile.mkdtemp())
    rng = random.Random(5)
    instants = edges()
    rows, msgs = [], []

    def add(person, ts, event, revenue=None, score=None):
        props = {}
        if revenue is not None:
            props.update(revenue=revenue, currency="EUR")
        if score is not None:
            props.update(score=score, survey_kind="nps")
        msgs.append({"type": "track", "userId": person, "event": event, "timestamp": iso(ts),
                     "messageId": f"m{len(msgs)}", "properties": props})
        rows.append((person, ts, event, revenue, score))

    for p in range(600):
        person = f"p{p:03d}"
        first = rng.randrange(len(instants) * 2 // 3)
        add(person, instants[first], "Signup")
        later = instants[first:]
        for ts in rng.sample(later, min(len(later), rng.randint(1, 12))):
            add(person, ts, "Visit")
        for ts in rng.sample(instants, rng.randint(0, 3)):
            add(person, ts, "Order Completed", revenue=round(rng.uniform(5, 300), 2))
        for ts in rng.sample(instants, rng.randint(0, 3)):
            add(person, ts, "Survey Responded", score=rng.randint(0, 10))
    with open(d / "w.jsonl", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in msgs)
    with open(d / "w.csv", "w") as f:
        f.write("person,ts,event,revenue,score\n")
        for person, ts, event, revenue, score in rows:
            f.write(f"{person},{ts},{event},{'' if revenue is None else revenue},{'' if score is None else score}\n")
    run("import", "--data", str(d / "data"), str(d / "w.jsonl"), "--quiet")
    yield d
    shutil.rmtree(d)


def src(d):
    return (f"file('{d / 'w.csv'}', 'CSVWithNames', "
            f"'person String, ts Int64, event String, revenue Nullable(Float64), score Nullable(Int32)')")


def period_start(period, zone, ts="ts"):
    return START[period].format(dt=f"toDateTime(intDiv({ts}, 1000), '{zone}')")


def ch(sql):
    return [line.replace('"', "").split(",") for line in chdb.query(sql, "CSV").bytes().decode().split()]


def test_the_touchpoints_sit_on_edges(world):
    """Most local dates of the same instants differ between zones: the zones disagree."""
    instants = edges()
    assert len(instants) > 1000
    days = {z: ch(f"SELECT toString(toDate(toDateTime(intDiv(ts, 1000), '{z}'))) FROM {src(world)} ORDER BY ts, person, event")
            for z in ["Europe/Berlin", "America/New_York"]}
    differ = sum(a != b for a, b in zip(*days.values()))
    assert differ > len(days["Europe/Berlin"]) // 10, differ


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("period", list(PERIODS))
def test_retention_equals_clickhouse(world, zone, period):
    n = PERIODS[period]
    ours = json.loads(run("query", "retention", "--data", str(world / "data"), "--cohort", "Signup",
                          "--return", "Visit", "--period", period, "--periods", str(n),
                          "--time-zone", zone, "--format", "json"))
    mine = {c["cohort"]: c["returned"] for c in ours["cohorts"]}
    cohorts = (f"SELECT person, {period_start(period, zone, 'min(ts)')} AS c FROM {src(world)} "
               f"WHERE event = 'Signup' GROUP BY person")
    ref = {cohort: [int(size)] + [0] * n for cohort, size in ch(f"SELECT toString(c), count() FROM ({cohorts}) GROUP BY c")}
    returns = f"""
        SELECT toString(c), k, uniqExact(person) FROM (
            SELECT person, c, {DIFF[period].format(a="c", b=period_start(period, zone))} AS k
            FROM {src(world)} AS t INNER JOIN ({cohorts}) AS s USING person
            WHERE event = 'Visit')
        WHERE k BETWEEN 1 AND {n} GROUP BY 1, 2"""
    for cohort, k, persons in ch(returns):
        ref[cohort][int(k)] = int(persons)
    assert len(ref) > 5
    assert mine == ref


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("period", list(PERIODS))
def test_revenue_per_period_equals_clickhouse(world, zone, period):
    ours = json.loads(run("query", "revenue", "--data", str(world / "data"), "--period", period,
                          "--time-zone", zone, "--format", "json"))
    mine = {r["period"]: (r["orders"], round(r["gross_revenue"], 6), r["customers"]) for r in ours["rows"]}
    ref = {p: (int(o), round(float(g), 6), int(c)) for p, o, g, c in ch(
        f"SELECT toString({period_start(period, zone)}), count(), sum(revenue), uniqExact(person) "
        f"FROM {src(world)} WHERE event = 'Order Completed' GROUP BY 1")}
    assert len(ref) > 3
    assert mine == ref


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("period", list(PERIODS))
def test_nps_per_period_equals_clickhouse(world, zone, period):
    ours = json.loads(run("query", "scores", "--data", str(world / "data"), "--kind", "nps", "--by", period,
                          "--time-zone", zone, "--format", "json"))
    mine = {g["key"]: (g["n"], g["nps"]["promoters"], g["nps"]["detractors"]) for g in ours["groups"]}
    ref = {p: (int(n), int(pro), int(de)) for p, n, pro, de in ch(
        f"SELECT toString({period_start(period, zone)}), count(), countIf(score >= 9), countIf(score <= 6) "
        f"FROM {src(world)} WHERE event = 'Survey Responded' GROUP BY 1")}
    assert len(ref) > 3
    assert mine == ref
