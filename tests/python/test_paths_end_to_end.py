"""Paths and flows recomputed from the export by an implementation of docs/paths.md written here:
forward from a start, backward to an end, between the two, per session, by event and by channel,
repeats collapsed or kept; every node (count, ended), every link and every complete path must
equal Itinera's. Persons are stitched by union-find, channels follow docs/channels.md (both from
the attribution test, no code shared with Itinera)."""

import json
from collections import Counter

import pytest

from exported import exported_world
from test_funnel_reference import run
from test_stages_end_to_end import persons


def sessions(rows, gap_ms):
    if gap_ms is None:
        return [rows]
    out = [[rows[0]]]
    for a, b in zip(rows, rows[1:]):
        if b["ts"] - a["ts"] >= gap_ms:
            out.append([])
        out[-1].append(b)
    return out


def path_of(rows, start, end, steps, node, collapse):
    """One journey's (or session's) path of node names, or None when it has none."""
    names = [r[node] for r in rows]
    events = [r["event"] for r in rows]
    if start is not None:
        if start not in events:
            return None
        i = events.index(start)
        seq = names[i:]
        if end is not None:
            # cut after the first end following the start; without one the path goes on (to show
            # where the people who never reached the end went instead)
            later = [j for j in range(i + 1, len(events)) if events[j] == end]
            if later:
                seq = names[i:later[0] + 1]
        backward = False
    elif end is not None:
        if end not in events:
            return None
        last = len(events) - 1 - events[::-1].index(end)
        seq = names[:last + 1][::-1]
        backward = True
    else:
        seq, backward = names, False
    if collapse:
        seq = [n for k, n in enumerate(seq) if k == 0 or n != seq[k - 1]]
    seq = seq[:steps]
    return seq[::-1] if backward else seq, backward


def recompute(journeys, start=None, end=None, steps=5, node="event", collapse=True, gap_ms=None):
    nodes, ended, links, paths = Counter(), Counter(), Counter(), Counter()
    for rows in journeys.values():
        for part in sessions(rows, gap_ms):
            got = path_of(part, start, end, steps, node, collapse)
            if got is None:
                continue
            seq, backward = got
            # node positions: from the start forward, or from the end backward (the end is step 0)
            ids = [f"{len(seq) - 1 - k if backward else k}:{n}" for k, n in enumerate(seq)]
            for i in ids:
                nodes[i] += 1
            ended[ids[0] if backward else ids[-1]] += 1
            for a, b in zip(ids, ids[1:]):
                links[(b, a) if backward else (a, b)] += 1
            paths[tuple(seq)] += 1
    return nodes, ended, links, paths


@pytest.fixture(scope="module")
def world():
    with exported_world(1500, 29) as (d, msgs):
        yield d, persons(msgs)


CASES = [
    dict(start="page_view", steps=5),
    dict(start="Product Viewed", steps=4, collapse=False),
    dict(end="Order Completed", steps=4),
    dict(start="Product Added", end="Order Completed", steps=8),
    dict(start="page_view", steps=4, node="channel"),
    dict(steps=3, gap_ms=30 * 60_000),
]


def args_of(case):
    a = ["--steps", str(case["steps"]), "--top", "100000"]
    if "start" in case:
        a += ["--start", case["start"]]
    if "end" in case:
        a += ["--end", case["end"]]
    if case.get("node"):
        a += ["--node", case["node"]]
    if case.get("collapse") is False:
        a += ["--keep-repeats"]
    if case.get("gap_ms"):
        a += ["--session-gap", f"{case['gap_ms'] // 60_000}m"]
    return a


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_paths_equal_the_definition(world, case):
    d, journeys = world
    ours = json.loads(run("query", "paths", "--data", str(d / "data"), "--format", "json", *args_of(case)))
    nodes, ended, links, paths = recompute(journeys, **case)
    assert ours["paths_counted"] == sum(paths.values())
    assert {n["id"]: (n["count"], n["ended"]) for n in ours["nodes"]} == \
        {i: (c, ended[i]) for i, c in nodes.items()}
    assert {(l["source"], l["target"]): l["value"] for l in ours["links"]} == dict(links)
    assert {tuple(p["path"]): p["count"] for p in ours["top_paths"]} == dict(paths)
    assert sum(paths.values()) > 100
