"""NPS and CSAT figures with their intervals, on a generated world, against statsmodels: the NPS
interval is the normal approximation of the mean of +1/0/−1 per answer (`DescrStatsW.
zconfint_mean`), the CSAT top-2-box interval is Wilson's (`proportion_confint(method="wilson")`),
at two confidence levels, overall and per survey. The answers are read from the export, not from
Itinera's figures."""

import json
from collections import defaultdict

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from exported import exported_world
from test_funnel_reference import run

SCALES = {"nps": (0, 10), "csat": (1, 5)}


@pytest.fixture(scope="module")
def world():
    with exported_world(3000, 21) as (d, msgs):
        answers = defaultdict(lambda: defaultdict(list))  # kind -> survey -> scores
        for m in msgs:
            p = m.get("properties") or {}
            if m.get("event") != "Survey Responded" or not isinstance(p.get("score"), (int, float)):
                continue
            kind = p.get("survey_kind")
            lo, hi = SCALES.get(kind, (None, None))
            if lo is not None and lo <= p["score"] <= hi:
                answers[kind][p.get("survey_id")].append(float(p["score"]))
        yield d, answers


def scores(d, kind, confidence):
    return json.loads(run("query", "scores", "--data", str(d / "data"), "--kind", kind, "--by", "survey",
                          "--confidence", str(confidence), "--format", "json"))


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_nps_interval_equals_statsmodels(world, confidence):
    d, answers = world
    ours = scores(d, "nps", confidence)
    groups = {g["key"]: g for g in ours["groups"]}
    cases = [(ours["overall"], [s for v in answers["nps"].values() for s in v])]
    cases += [(groups[k], v) for k, v in answers["nps"].items()]
    assert len(cases[0][1]) > 100
    for row, values in cases:
        x = np.array([1.0 if s >= 9 else -1.0 if s <= 6 else 0.0 for s in values])
        lo, hi = DescrStatsW(x).zconfint_mean(alpha=1 - confidence)
        assert row["n"] == len(values)
        assert row["nps"]["nps"] == pytest.approx(100 * x.mean(), abs=1e-9)
        assert row["nps"]["ci_low"] == pytest.approx(100 * max(lo, -1.0), abs=1e-9)
        assert row["nps"]["ci_high"] == pytest.approx(100 * min(hi, 1.0), abs=1e-9)


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_csat_top_two_box_interval_equals_statsmodels_wilson(world, confidence):
    d, answers = world
    ours = scores(d, "csat", confidence)
    groups = {g["key"]: g for g in ours["groups"]}
    cases = [(ours["overall"], [s for v in answers["csat"].values() for s in v])]
    cases += [(groups[k], v) for k, v in answers["csat"].items()]
    assert len(cases[0][1]) > 100
    for row, values in cases:
        good = sum(1 for s in values if s >= 4)
        lo, hi = proportion_confint(good, len(values), alpha=1 - confidence, method="wilson")
        assert row["n"] == len(values)
        assert row["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert row["good_share"]["share"] == pytest.approx(good / len(values), abs=1e-12)
        assert row["good_share"]["ci_low"] == pytest.approx(lo, abs=1e-12)
        assert row["good_share"]["ci_high"] == pytest.approx(hi, abs=1e-12)
