"""The stage funnel of every built-in model, recomputed from the export by an implementation of
docs/stages.md written here (selectors, `after`, entered / reached / current / churned,
customers, time in stage), sharing no code with Itinera. Channels come from the attribution
test's implementation of docs/channels.md."""

import json
import re

import pytest

from test_attribution_end_to_end import channel, ms
from exported import Stitch, exported_world
from test_funnel_reference import run

MODELS = ["buyer-journey", "customer-journey", "seven-stage", "aida"]
IMPLICIT = {"page": "page_view", "screen": "screen_view", "identify": "identify", "group": "group",
            "alias": "alias"}


def pattern_matches(p, value):
    if isinstance(p, str):
        return value == p
    if isinstance(p, list):
        return value in p
    if isinstance(p, dict) and "regex" in p:
        return re.search(p["regex"], value) is not None
    raise ValueError(p)


def selector_matches(sel, row):
    if isinstance(sel, str):
        return row["event"] == sel
    if "any" in sel:
        return any(selector_matches(c, row) for c in sel["any"])
    return all(pattern_matches(p, row[field]) for field, p in sel.items())


def duration_ms(text):
    n, unit = re.fullmatch(r"(\d+)([dhms])", text).groups()
    return int(n) * {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}[unit]


def persons(messages):
    """Each person's rows (ts, kind, channel, event), in time order."""
    stitch = Stitch(messages)
    out = {}
    for m in messages:
        row = {"ts": ms(m["timestamp"]), "kind": m["type"], "channel": channel(m),
               "event": m.get("event") if m["type"] == "track" else IMPLICIT.get(m["type"], m["type"])}
        out.setdefault(stitch.person(m), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["ts"])
    return out


def quantile(sorted_values, q):
    """The value at rank ceil(q·n) (1-based), the nearest-rank definition."""
    import math
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def recompute(model, journeys):
    stages = model["stages"]
    names = [s["name"] for s in stages]
    n = len(stages)
    data_end = max(r["ts"] for rows in journeys.values() for r in rows)
    churn = duration_ms(model["churn_after"])
    entered, reached, current = [0] * n, [0] * n, [0] * n
    times = [[] for _ in range(n)]
    churned = customers = counted = 0
    for rows in journeys.values():
        first = [None] * n
        latest_stage = None
        for r in rows:
            for k, s in enumerate(stages):
                if not selector_matches(s["enter"], r):
                    continue
                after = s.get("after")
                if after is not None:
                    j = names.index(after)
                    if first[j] is None or r["ts"] <= first[j]:
                        continue
                if first[k] is None:
                    first[k] = r["ts"]
                latest_stage = k
        furthest = max((k for k in range(n) if first[k] is not None), default=None)
        if furthest is None:
            continue  # in no stage: not counted (but their touchpoints still end the data)
        counted += 1
        for k in range(n):
            if first[k] is not None:
                entered[k] += 1
            if k <= furthest:
                reached[k] += 1
            later = [first[j] for j in range(k + 1, n) if first[j] is not None and first[k] is not None
                     and first[j] >= first[k]]
            if later:
                times[k].append(min(later) - first[k])
        if latest_stage is not None:
            current[latest_stage] += 1
        if rows[-1]["ts"] < data_end - churn:
            churned += 1
        purchase = model.get("purchase_stage")
        if purchase is not None and furthest >= names.index(purchase):
            customers += 1
    out = []
    for k in range(n):
        t = sorted(times[k])
        out.append({"stage": names[k], "entered": entered[k], "reached": reached[k], "current": current[k],
                    "dropped": reached[k] - (reached[k + 1] if k + 1 < n else 0),
                    "median_seconds_in_stage": quantile(t, 0.5) / 1000 if t else None,
                    "p90_seconds_in_stage": quantile(t, 0.9) / 1000 if t else None})
    return out, churned, customers, counted


@pytest.fixture(scope="module")
def world():
    with exported_world(2000, 17) as (d, msgs):
        yield d, persons(msgs)


@pytest.mark.parametrize("name", MODELS)
def test_stage_funnel_equals_the_definition(world, name):
    d, journeys = world
    model = json.loads(run("query", "stages", "--model", name, "--show-model", "--data", str(d / "data"),
                           "--format", "json"))
    ours = json.loads(run("query", "stages", "--model", name, "--data", str(d / "data"), "--format", "json"))
    rows, churned, customers, n = recompute(model, journeys)
    assert ours["persons"] == n
    assert ours["churned"] == churned
    assert ours["customers"] == customers
    for got, want in zip(ours["stages"], rows):
        for field, value in want.items():
            assert got[field] == (pytest.approx(value) if isinstance(value, float) else value), (name, field, got)
    assert customers > 100 and rows[-1]["reached"] > 0


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_churn_at_several_periods_equals_the_definition(world, share):
    """A saved copy of the customer journey with the churn period at a quantile of the persons'
    inactivity at the end of the data, so that churned and active persons are both many."""
    d, journeys = world
    model = json.loads(run("query", "stages", "--model", "customer-journey", "--show-model", "--data",
                           str(d / "data"), "--format", "json"))
    end = max(r["ts"] for rows in journeys.values() for r in rows)
    idle = sorted(end - rows[-1]["ts"] for rows in journeys.values())
    days = max(1, round(idle[int(share * len(idle))] / 86_400_000))
    model["churn_after"] = f"{days}d"
    path = d / f"churn-{days}.json"
    path.write_text(json.dumps(model))
    ours = json.loads(run("query", "stages", "--model", str(path), "--data", str(d / "data"), "--format", "json"))
    rows, churned, customers, n = recompute(model, journeys)
    assert 0.1 * n < churned < 0.9 * n, (days, churned, n)
    assert ours["churned"] == churned
    assert [s["current"] for s in ours["stages"]] == [r["current"] for r in rows]
