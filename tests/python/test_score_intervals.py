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


@pytest.mark.parametrize("kind,confidence", [("nps", 0.95), ("csat", 0.9)])
def test_emotion_band_is_the_means_interval_on_the_emotion_scale(world, kind, confidence):
    """The journey map draws each stage's measured emotion with a band: the mean answer's
    z-interval (statsmodels' `zconfint_mean`), carried onto −2 … +2 like the mean itself."""
    d, answers = world
    ours = scores(d, kind, confidence)
    groups = {g["key"]: g for g in ours["groups"]}
    lo_s, hi_s = SCALES[kind]
    to_emotion = lambda v: min(2.0, max(-2.0, 4 * (v - lo_s) / (hi_s - lo_s) - 2))
    cases = [(ours["overall"], [s for v in answers[kind].values() for s in v])]
    cases += [(groups[k], v) for k, v in answers[kind].items() if len(v) > 1]
    for row, values in cases:
        lo, hi = DescrStatsW(np.array(values)).zconfint_mean(alpha=1 - confidence)
        assert row["emotion"] == pytest.approx(to_emotion(np.mean(values)), abs=1e-12)
        assert row["emotion_band"][0] == pytest.approx(to_emotion(lo), abs=1e-9)
        assert row["emotion_band"][1] == pytest.approx(to_emotion(hi), abs=1e-9)
