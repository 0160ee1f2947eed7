"""Customer lifetime value against the published CDNOW estimates and the `lifetimes` package.

The CDNOW sample (2,357 customers, shipped in PyPI's `lifetimes`) is imported as Segment
`Order Completed` events; `itinera query clv --calibration-end 1997-09-30 --time-unit week`
must reproduce the published BG/NBD estimates (Fader, Hardie & Lee 2005: r = 0.243,
alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9582.4) and Gamma-Gamma estimates (Fader &
Hardie 2013: p = 6.25, q = 3.74, gamma = 15.44), and per-customer predictions must agree with
`lifetimes` fitted on the same data to 4 significant digits.
"""

import json
import os
import subprocess
from pathlib import Path

import lifetimes
import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ITINERA_BIN", ROOT / "target" / "debug" / "itinera"))
CDNOW = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
HORIZON, DISCOUNT = 52, 0.01


def run(*args):
    return subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "ITINERA_LOG": "warn"}).stdout


DATA_DIRS = {}


def cdnow_data(_tx):
    return DATA_DIRS["cdnow"]


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cdnow")
    tx = pd.read_csv(CDNOW, sep=r"\s+", header=None, names=["master", "id", "date", "cds", "value"])
    events = tmp / "cdnow.jsonl"
    with open(events, "w") as out:
        for n, row in enumerate(tx.itertuples(index=False)):
            d = str(row.date)
            out.write(json.dumps({
                "type": "track", "event": "Order Completed", "userId": f"c{row.id}",
                "messageId": f"cdnow-{n}", "timestamp": f"{d[:4]}-{d[4:6]}-{d[6:]}T12:00:00Z",
                "properties": {"revenue": float(row.value), "quantity": int(row.cds)}}) + "\n")
    data = tmp / "data"
    run("import", str(events), "--data", str(data))
    ours = json.loads(run("query", "clv", "--data", str(data), "--calibration-end", "1997-09-30",
                          "--time-unit", "week", "--horizon", str(HORIZON), "--discount",
                          str(DISCOUNT), "--format", "json"))
    tx["date"] = pd.to_datetime(tx["date"].astype(str))
    summary = summary_data_from_transaction_data(
        tx[tx["date"] <= "1997-09-30"], "id", "date", observation_period_end="1997-09-30",
        freq="D", monetary_value_col="value")
    summary["recency"] /= 7
    summary["T"] /= 7
    DATA_DIRS["cdnow"] = data
    return ours, summary, tx


def test_published_bg_nbd_and_gamma_gamma_estimates(cdnow):
    ours, _, _ = cdnow
    bg, gg = ours["bg_nbd"], ours["gamma_gamma"]
    assert ours["totals"]["customers"] == 2357
    assert round(bg["r"], 3) == 0.243
    assert round(bg["alpha"], 3) == 4.414
    assert round(bg["a"], 3) == 0.793
    assert round(bg["b"], 3) == 2.426
    assert round(bg["log_likelihood"], 1) == -9582.4
    assert round(gg["p"], 2) == 6.25
    assert round(gg["q"], 2) == 3.74
    assert round(gg["gamma"], 2) == 15.44


def test_summaries_and_predictions_agree_with_lifetimes(cdnow):
    ours, summary, tx = cdnow
    bgf = lifetimes.BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    returning = summary[summary["frequency"] > 0]
    ggf = lifetimes.GammaGammaFitter().fit(returning["frequency"], returning["monetary_value"])
    s = summary
    expected = np.asarray(bgf.conditional_expected_number_of_purchases_up_to_time(
        HORIZON, s["frequency"], s["recency"], s["T"]))
    alive = np.asarray(bgf.conditional_probability_alive(s["frequency"], s["recency"], s["T"]))
    spend = np.asarray(ggf.conditional_expected_average_profit(s["frequency"],
                                                                s["monetary_value"]))
    # discounted CLV per time unit, from lifetimes' own predictions
    clv = np.zeros(len(s))
    before = np.zeros(len(s))
    for i in range(1, HORIZON + 1):
        cum = np.asarray(bgf.predict(i, s["frequency"], s["recency"], s["T"]))
        clv += (cum - before) * spend / (1 + DISCOUNT) ** i
        before = cum
    mine = {c["id"]: c for c in ours["customers"]}
    assert len(mine) == len(s)
    worst = 0.0
    for k, cid in enumerate(s.index):
        c = mine[f"c{cid}"]
        assert c["frequency"] == s["frequency"].iloc[k]
        assert c["recency"] == pytest.approx(s["recency"].iloc[k], abs=1e-12)
        assert c["age"] == pytest.approx(s["T"].iloc[k], abs=1e-12)
        assert c["monetary_value"] == pytest.approx(s["monetary_value"].iloc[k], rel=1e-12)
        for field, ref in [("expected_purchases", expected[k]),
                           ("probability_alive", alive[k]),
                           ("expected_spend", spend[k]),
                           ("predicted_clv", clv[k])]:
            rel = abs(c[field] - ref) / max(abs(ref), 1e-12)
            worst = max(worst, rel)
            # 4 significant digits
            assert rel < 5e-5, (cid, field, c[field], ref)
    print("largest relative difference:", worst)
    holdout = tx[(tx["date"] > "1997-09-30")].groupby("id")["date"].nunique()
    assert ours["totals"]["holdout_purchases"] == int(holdout.sum())


def test_value_tiers_and_churn_risk_become_segments(cdnow):
    ours, summary, tx = cdnow
    data = str(cdnow_data(tx))
    run("query", "clv", "--data", data, "--calibration-end", "1997-09-30", "--limit", "1",
        "--save-segment", "vip=high", "--save-segment", "at-risk=churn-risk")
    sizes = dict(json.loads(run("query", "segments", "--data", data, "--format", "json"))["segments"])
    assert sizes["vip"] == sum(1 for c in ours["customers"] if c["value_tier"] == "high")
    assert sizes["at-risk"] == ours["totals"]["churn_risk"]
    # customers predicted valuable buy more in the holdout period than those at churn risk
    holdout = {}
    for seg in ["vip", "at-risk"]:
        r = json.loads(run("query", "funnel", "--data", data, "--step", "Order Completed",
                           "--from", "1997-10-01", "--segment", seg, "--format", "json"))
        holdout[seg] = r["steps"][0]["count"] / sizes[seg]
    assert holdout["vip"] > 1.5 * holdout["at-risk"], holdout  # measured: 0.67 vs 0.35


def test_bad_calibration_input_names_the_flag(tmp_path):
    r = subprocess.run([str(BIN), "query", "clv", "--data", str(tmp_path / "d"),
                        "--calibration-end", "30/09/1997"], capture_output=True, text=True)
    assert r.returncode != 0 and "calibration-end" in r.stderr
