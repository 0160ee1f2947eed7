"""Attribution on stored journeys, recomputed from the export by an implementation written here
from the definitions in docs/channels.md and docs/attribution.md, sharing no code with Itinera:
channels from each message's context, persons stitched by union-find, visits (30-minute gap, a
non-direct channel starts a new one), paths since the previous conversion within the 30-day
lookback, and every heuristic model (first, last, last non-direct, linear, time decay,
position based) per channel, conversions and value. Also per UTM campaign, and per B2B account
against the generator's won deals."""

import json
import math
from collections import defaultdict
from datetime import datetime

import pytest

from exported import Stitch, exported_world
from test_funnel_reference import run

GAP_MS = 30 * 60_000
LOOKBACK_MS = 30 * 86_400_000
HALF_LIFE_MS = 7 * 86_400_000
EDGE = 0.4
CONVERSION = "Order Completed"

EVENT_CHANNELS = {"email opened": "email", "email link clicked": "email", "email delivered": "email",
                  "email bounced": "email", "push notification tapped": "push", "call started": "call_center",
                  "call completed": "call_center", "store visit": "store", "ticket created": "support",
                  "ticket resolved": "support", "review posted": "review", "referral accepted": "referral"}
LIBRARY_CHANNELS = [("pos", "store"), ("store", "store"), ("call-center", "call_center"),
                    ("callcenter", "call_center"), ("zendesk", "support"), ("mailchimp", "email"),
                    ("sendgrid", "email")]
SOCIAL_SOURCES = {"facebook", "instagram", "linkedin", "twitter", "x", "tiktok", "pinterest", "reddit",
                  "youtube", "snapchat"}
MEDIUMS = {**dict.fromkeys(["cpc", "ppc", "paid", "paidsearch", "paid_search"], "paid_search"),
           "paid_social": "paid_social", **dict.fromkeys(["email", "e-mail", "newsletter"], "email"),
           **dict.fromkeys(["social", "social-network", "sm"], "social"), "organic": "organic_search",
           "referral": "referral", "affiliate": "affiliate",
           **dict.fromkeys(["display", "banner", "cpm"], "display"), "sms": "sms", "push": "push"}
SEARCH = ["google.", "bing.com", "duckduckgo.com", "yahoo.com", "ecosia.org", "baidu.com", "yandex.",
          "qwant.com", "startpage.com", "search.brave.com"]
SOCIAL_SITES = ["facebook.com", "instagram.com", "linkedin.com", "lnkd.in", "twitter.com", "x.com", "t.co",
                "tiktok.com", "pinterest.", "reddit.com", "youtube.com", "snapchat.com", "xing.com",
                "threads.net", "mastodon.social", "bsky.app"]
MOBILE = ["analytics-ios", "analytics-android", "analytics-react-native", "analytics-flutter",
          "analytics-kotlin", "analytics-swift"]


def host(url):
    h = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return h[4:] if h.startswith("www.") else h


def site_matches(h, site):
    """`google.` matches any google.TLD; a domain matches itself and its subdomains."""
    if site.endswith("."):
        return h.startswith(site) or f".{site}" in f".{h}"
    return h == site or h.endswith("." + site)


def channel(m):
    """docs/channels.md, rules 1 to 7 in order."""
    props, ctx = m.get("properties") or {}, m.get("context") or {}
    for k in ("touchpoint_channel", "channel"):
        if isinstance(props.get(k), str) and props[k]:
            return props[k].lower()
    if m["type"] == "track" and (m.get("event") or "").lower() in EVENT_CHANNELS:
        return EVENT_CHANNELS[m["event"].lower()]
    lib = ((ctx.get("library") or {}).get("name") or "").lower()
    for needle, ch in LIBRARY_CHANNELS:
        if needle in lib:
            return ch
    campaign = ctx.get("campaign") or {}
    medium = (campaign.get("medium") or "").lower()
    if medium in MEDIUMS:
        ch = MEDIUMS[medium]
        if ch == "paid_search" and (campaign.get("source") or "").lower() in SOCIAL_SOURCES:
            return "paid_social"
        return ch
    page = ctx.get("page") or {}
    ref = page.get("referrer")
    if ref and host(ref) != host(page.get("url") or ""):
        h = host(ref)
        if any(site_matches(h, s) for s in SEARCH):
            return "organic_search"
        if any(site_matches(h, s) for s in SOCIAL_SITES):
            return "social"
        return "referral"
    if m["type"] == "screen" or any(x in lib for x in MOBILE):
        return "app"
    return "direct"


def ms(ts):
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def journeys(messages, key_of, count_by_account=False):
    """Rows (ts, key, is_conversion, revenue) per journey: persons stitched by union-find over
    messages carrying two ids, or with `count_by_account` the members of each account together."""
    stitch = Stitch(messages)
    find = stitch.find
    account = {}
    if count_by_account:
        # a person's account: the group they joined latest (group calls name it)
        for m in sorted(messages, key=lambda m: ms(m["timestamp"])):
            if m["type"] == "group":
                account[find(m.get("userId") or m.get("anonymousId"))] = m["groupId"]
    out = defaultdict(list)
    for m in messages:
        if m["type"] not in ("page", "screen", "track"):
            continue
        person = stitch.person(m)
        journey = account.get(person) if count_by_account else person
        if journey is None:
            continue
        conv = m["type"] == "track" and m.get("event") == CONVERSION
        props = m.get("properties") or {}
        value = props.get("revenue", props.get("total"))
        value = float(value) if isinstance(value, (int, float)) else 0.0
        out[journey].append((ms(m["timestamp"]), key_of(m), conv, value))
    for rows in out.values():
        rows.sort(key=lambda r: r[0])
    return out


def touches_and_conversions(rows, direct="direct", lookback_ms=LOOKBACK_MS):
    """Visits as touches (start time, key), and each conversion with the touches of its path."""
    path, last_row = [], None
    for ts, key, conv, value in rows:
        if not conv:
            if path and ts - last_row <= GAP_MS and (key == path[-1][1] or key == direct):
                pass  # the visit goes on
            else:
                path.append((ts, key))
            last_row = ts
            continue
        window = [t for t in path if t[0] >= ts - lookback_ms]
        yield ts, value, window
        path = []


def shares(model, window, conv_ts, direct="direct"):
    n = len(window)
    keys = [k for _, k in window]
    if model == "first_touch":
        return [(keys[0], 1.0)]
    if model == "last_touch":
        return [(keys[-1], 1.0)]
    if model == "last_non_direct":
        non_direct = [k for k in keys if k != direct]
        return [((non_direct or keys)[-1], 1.0)]
    if model == "linear":
        return [(k, 1.0 / n) for k in keys]
    if model == "time_decay":
        w = [2 ** (-(conv_ts - ts) / HALF_LIFE_MS) for ts, _ in window]
        return [(k, x / sum(w)) for k, x in zip(keys, w)]
    if model == "position_based":
        if n == 1:
            return [(keys[0], 1.0)]
        if n == 2:
            return [(keys[0], 0.5), (keys[1], 0.5)]
        middle = (1 - 2 * EDGE) / (n - 2)
        return [(keys[0], EDGE), (keys[-1], EDGE)] + [(k, middle) for k in keys[1:-1]]
    raise ValueError(model)


MODELS = ["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based"]


def recompute(js, direct="direct", lookback_ms=LOOKBACK_MS):
    credit = {m: defaultdict(lambda: [0.0, 0.0]) for m in MODELS}
    totals = {"conversions": 0, "value": 0.0, "unattributed_conversions": 0, "unattributed_value": 0.0}
    for rows in js.values():
        for conv_ts, value, window in touches_and_conversions(rows, direct, lookback_ms):
            if not window:
                totals["unattributed_conversions"] += 1
                totals["unattributed_value"] += value
                continue
            totals["conversions"] += 1
            totals["value"] += value
            for m in MODELS:
                for k, share in shares(m, window, conv_ts, direct):
                    credit[m][k][0] += share
                    credit[m][k][1] += share * value
    return credit, totals


@pytest.fixture(scope="module")
def world():
    with exported_world(2000, 13) as w:
        yield w


def itinera(d, *args):
    return json.loads(run("query", "attribution", "--data", str(d / "data"), "--format", "json", *args))


def compare(ours, credit, totals):
    assert ours["totals"]["conversions"] == pytest.approx(totals["conversions"])
    assert ours["totals"]["value"] == pytest.approx(totals["value"], rel=1e-9)
    assert ours["totals"]["unattributed_conversions"] == pytest.approx(totals["unattributed_conversions"])
    assert ours["totals"]["unattributed_value"] == pytest.approx(totals["unattributed_value"], rel=1e-9)
    theirs = {k["name"]: k["credit"] for k in ours["keys"]}
    for m in MODELS:
        ref = {k: v for k, v in credit[m].items() if v[0] > 1e-12}
        got = {name: (c[m]["conversions"], c[m]["value"]) for name, c in theirs.items()
               if m in c and c[m]["conversions"] > 1e-12}
        assert got.keys() == ref.keys(), m
        for k in ref:
            assert got[k][0] == pytest.approx(ref[k][0], rel=1e-9, abs=1e-9), (m, k)
            assert got[k][1] == pytest.approx(ref[k][1], rel=1e-9, abs=1e-6), (m, k)


def test_the_world_has_what_the_models_need(world):
    """Several channels, conversions with and without a touch in the window, and equal
    timestamps within journeys: their order is the stored order, which the export keeps, so the
    recomputation sees them as the engine does (a direct touchpoint tied with another channel's
    joins that visit or not by this order)."""
    _, msgs = world
    chans = {channel(m) for m in msgs if m["type"] in ("page", "screen", "track")}
    assert {"direct", "email", "paid_search"} <= chans and len(chans) >= 6, chans
    _, totals = recompute(journeys(msgs, channel))
    assert totals["conversions"] > 300 and totals["unattributed_conversions"] > 0, totals


def test_every_heuristic_model_per_channel_equals_the_definition(world):
    d, msgs = world
    credit, totals = recompute(journeys(msgs, channel))
    ours = itinera(d, "--by", "channel")
    compare(ours, credit, totals)
    # every order of the generator is a conversion, attributed or not, with its revenue
    realized = json.loads((d / "w.jsonl.truth.json").read_text())["realized"]
    t = ours["totals"]
    assert t["conversions"] + t["unattributed_conversions"] == realized["orders"]
    assert t["value"] + t["unattributed_value"] == pytest.approx(realized["revenue"])


def test_every_heuristic_model_per_campaign_equals_the_definition(world):
    """Campaigns: touchpoints without one continue the visit before them, like direct ones."""
    d, msgs = world

    def campaign(m):
        return ((m.get("context") or {}).get("campaign") or {}).get("name") or "(none)"

    credit, totals = recompute(journeys(msgs, campaign), direct="(none)")
    compare(itinera(d, "--by", "campaign"), credit, totals)


def test_by_account_equals_the_definition_and_the_generators_deals(world):
    """B2B deals close months after the first touches: a year's lookback."""
    d, msgs = world
    credit, totals = recompute(journeys(msgs, channel, count_by_account=True), lookback_ms=365 * 86_400_000)
    ours = itinera(d, "--by", "channel", "--by-account", "--lookback", "365d")
    compare(ours, credit, totals)
    generated = [json.loads(line) for line in (d / "w.jsonl").read_text().splitlines()]
    deals = [m for m in generated if m.get("event") == CONVERSION and (m.get("properties") or {}).get("account")]
    assert len(deals) >= 10
    t = ours["totals"]
    assert t["conversions"] + t["unattributed_conversions"] == len(deals)
    assert t["value"] + t["unattributed_value"] == pytest.approx(sum(m["properties"]["revenue"] for m in deals))
    assert t["conversions"] > t["unattributed_conversions"], t


def null_path(rows, direct="direct", lookback_ms=LOOKBACK_MS):
    """The touches after the journey's last conversion (or of the whole journey without one),
    within the lookback before its last touch: what Markov and Shapley learn non-conversion from."""
    path, last_row = [], None
    for ts, key, conv, _ in rows:
        if conv:
            path = []
            continue
        if not (path and ts - last_row <= GAP_MS and (key == path[-1][1] or key == direct)):
            path.append((ts, key))
        last_row = ts
    if not path:
        return []
    return [t for t in path if t[0] >= path[-1][0] - lookback_ms]


def path_table(js):
    """The journeys as a ChannelAttribution path table (path; conversions; value; nulls)."""
    import pandas as pd
    agg = defaultdict(lambda: [0, 0.0, 0])
    for rows in js.values():
        for _, value, window in touches_and_conversions(rows):
            if window:
                a = agg[" > ".join(k for _, k in window)]
                a[0] += 1
                a[1] += value
        nulls = null_path(rows)
        if nulls:
            agg[" > ".join(k for _, k in nulls)][2] += 1
    return pd.DataFrame([(p, c, v, n) for p, (c, v, n) in agg.items()],
                        columns=["path", "total_conversions", "total_conversion_value", "total_null"])


def test_markov_and_shapley_markov_on_stored_journeys_equal_the_absorbing_chain(world):
    """Markov (order 1) removal effects and exact Markov-chain Shapley values on stored
    journeys, from the paths recomputed here and the reference test's own numpy absorbing-chain
    solution."""
    import itertools

    import numpy as np
    from test_attribution_reference import absorb, chain, removal_effects

    d, msgs = world
    table = path_table(journeys(msgs, channel))
    ours = itinera(d, "--by", "channel", "--model", "markov", "--model", "shapley_markov", "--order", "1")
    assert ours["totals"]["null_paths"] == table["total_null"].sum()
    assert ours["totals"]["distinct_paths"] == len(table)
    exact = removal_effects(table, 1)
    for k in ours["keys"]:
        assert k["removal_effect"]["conversions"] == pytest.approx(exact[k["name"]][0], abs=1e-9), k["name"]
        assert k["removal_effect"]["value"] == pytest.approx(exact[k["name"]][1], abs=1e-9), k["name"]
    # Shapley: the Markov chain's worth of every coalition of channels, weighted by the
    # Shapley formula over coalitions (all 2^n of them)
    c = chain(table, 1)
    present = sorted({x.strip() for p in table["path"] for x in p.split(">")})
    assert ours["shapley_markov"]["exact"] and len(present) <= 12
    worth = {}
    for r in range(len(present) + 1):
        for s in itertools.combinations(present, r):
            keep = set(s)
            worth[frozenset(s)] = absorb(*c, removed=lambda st, keep=keep: not set(st) <= keep)
    n = len(present)
    phi = {ch: np.zeros(2) for ch in present}
    for coalition, v in worth.items():
        for ch in present:
            if ch not in coalition:
                weight = math.factorial(len(coalition)) * math.factorial(n - len(coalition) - 1) / math.factorial(n)
                phi[ch] += weight * (worth[coalition | {ch}] - v)
    grand = worth[frozenset(present)]
    total = table["total_conversions"].sum()
    got = {k["name"]: k["credit"]["shapley_markov"]["conversions"] for k in ours["keys"]}
    for ch in present:
        assert got.get(ch, 0.0) == pytest.approx(total * phi[ch][0] / grand[0], abs=1e-7), ch
