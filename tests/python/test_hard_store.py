"""The reference answers on the store users really have, not one freshly compacted segment.

The journey world is sent over the tracking API of a running server whose store flushes every
1,500 rows and compacts in the background, in random order (every person's touchpoints
spread over many segments), with identify and alias messages last (identities merged in later
segments than the touchpoints they join), a few persons with thousands of touchpoints on tied
timestamps, and the last rows still in the memory table. Funnels in every mode and retention are
then compared with ClickHouse (chDB) while another client keeps appending, again once it has
stopped, and again after `itinera compact`: the three answers must be equal to each other and to
the reference. Paths, attribution and stages on the same store are compared with the same data
compacted and with the recomputations of docs/*.md from the export (the end-to-end tests)."""

import base64
import json
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import chdb
import pytest

from test_attribution_end_to_end import channel, compare as compare_attribution
from test_attribution_end_to_end import journeys as attribution_journeys
from test_attribution_end_to_end import recompute as recompute_attribution
from test_funnel_reference import BIN, MODES, WORLD_FUNNELS, chdb_levels, iso, run, stitched_rows, write_csv
from test_paths_end_to_end import recompute as recompute_paths
from test_stages_end_to_end import persons
from test_stages_end_to_end import recompute as recompute_stages

HEAVY_EVENTS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Email Opened"]
CONFIG = """
[store]
flush_rows = 1500
compact_after_segments = 4
"""


def heavy_persons(rng):
    """Four persons with 2,500 touchpoints each inside one hour on whole seconds: many ties."""
    base = 1_714_000_000_000
    out = []
    for p in range(4):
        for i in range(2500):
            out.append({"type": "track", "userId": f"heavy-{p}", "event": rng.choice(HEAVY_EVENTS),
                        "timestamp": iso(base + rng.randint(0, 3600) * 1000), "messageId": f"heavy-{p}-{i}"})
    return out


class Server:
    """`itinera serve` on port 0; the address is read from its first line of output."""

    def __init__(self, data: Path, config: Path):
        self.keys = json.loads(run("keys", "create", "--data", str(data), "--format", "json"))
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--data", str(data), "--config", str(config), "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("Itinera is running at "), line
        self.url = line.split()[-1].rstrip("/")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        basic = base64.b64encode(f"{self.keys['write_key']}:".encode()).decode()
        self.write_auth = f"Basic {basic}"
        self.read_auth = f"Bearer {self.keys['read_token']}"

    def post(self, path, body, auth):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "authorization": auth})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read() or b"null")

    def send(self, batch):
        """One batch, acknowledged; a rate limit is waited out, anything else fails the test."""
        while True:
            try:
                return self.post("/v1/batch", {"batch": batch}, self.write_auth)
            except urllib.error.HTTPError as e:
                if e.code != 429:
                    raise AssertionError(f"batch refused: {e.code} {e.read()[:300]!r}")
                time.sleep(float(e.headers.get("retry-after", "1")))

    def query(self, kind, body):
        return self.post(f"/api/v1/{kind}", body, self.read_auth)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0


class Appender(threading.Thread):
    """Keeps appending touchpoints of 700 new persons (an event no world funnel names) until
    stopped, or 14,000 of them are stored."""

    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.server, self.rows, self.stopping, self.error = server, [], threading.Event(), None

    def run(self):
        n = 0
        try:
            while not self.stopping.is_set() and n < 14_000:  # fewer than 30 rows per person
                batch = []
                for _ in range(50):
                    ts = 1_714_000_000_000 + n * 1000
                    batch.append({"type": "track", "userId": f"noise-{n % 700}", "event": "Noise Seen",
                                  "timestamp": iso(ts), "messageId": f"noise-{n}"})
                    self.rows.append((f"noise-{n % 700}", ts, "Noise Seen"))
                    n += 1
                self.server.send(batch)
                time.sleep(0.01)
        except Exception as e:  # reported by the test, not lost in the thread
            self.error = e


def funnel_body(steps, window_ms, mode):
    return {"steps": [{"match": s} for s in steps], "window": window_ms / 1000, "order": mode}


RETENTION = {"cohort": "Product Viewed", "return_event": "page_view", "period": "day", "periods": 7}


def chdb_retention(csv_path, n=7):
    """ClickHouse's retention() per person, day cohorts by the first `Product Viewed`."""
    day = "toDate(toDateTime(intDiv({}, 1000), 'UTC'))"
    conds = ", ".join(f"{day.format('ts')} = {day.format('f')} + {k} AND event = 'page_view'" for k in range(1, n + 1))
    src = f"file('{csv_path}', 'CSVWithNames', 'person String, ts UInt64, event String')"
    sql = f"""
        SELECT toString(cohort), count(), {", ".join(f"sum(r[{k + 1}])" for k in range(1, n + 1))}
        FROM (SELECT person, {day.format('any(f)')} AS cohort,
                     retention(ts = f AND event = 'Product Viewed', {conds}) AS r
              FROM {src} AS t
              INNER JOIN (SELECT person, min(ts) AS f FROM {src} WHERE event = 'Product Viewed' GROUP BY person)
              AS first USING person
              GROUP BY person)
        GROUP BY cohort ORDER BY cohort"""
    out = chdb.query(sql, "CSV").bytes().decode()
    ref = {}
    for line in out.split():
        cells = line.replace('"', "").split(",")
        ref[cells[0]] = [int(c) for c in cells[1:]]
    return ref


def retention_table(answer):
    return {c["cohort"]: c["returned"] for c in answer["cohorts"]}


def nonzero_levels(answer, from_level=0):
    return {k: n for k, n in enumerate(answer["levels"]) if n and k >= from_level}


FUNNEL_CASES = [(tuple(steps), w, mode) for mode in MODES for steps in WORLD_FUNNELS[:3]
                for w in (3_600_000, 7 * 86_400_000)]


@pytest.fixture(scope="module")
def hard_store():
    d = Path(tempfile.mkdtemp())
    rng = random.Random(11)
    run("generate", "--out", str(d / "w.jsonl"), "--customers", "1500", "--seed", "7")
    messages = [json.loads(line) for line in (d / "w.jsonl").read_text().splitlines()]
    messages += heavy_persons(rng)
    links = [m for m in messages if m["type"] in ("identify", "alias")]
    touchpoints = [m for m in messages if m["type"] not in ("identify", "alias")]
    rng.shuffle(touchpoints)
    sent = touchpoints + links
    with open(d / "sent.jsonl", "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in sent)
    (d / "config.toml").write_text(CONFIG)
    server = Server(d / "data", d / "config.toml")
    try:
        for i in range(0, len(sent), 250):
            server.send(sent[i:i + 250])
        rows = stitched_rows(d / "sent.jsonl")
        write_csv(d / "ref.csv", rows)
        yield {"dir": d, "server": server, "rows": rows, "sent": len(sent)}
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        shutil.rmtree(d, ignore_errors=True)


def test_the_store_is_built_the_hard_way(hard_store):
    """Several live segments after background compactions, and rows still in memory: what the
    rest of this file relies on."""
    d = hard_store["dir"]
    stats = json.loads(run("stats", "--data", str(d / "data"), "--format", "json"))
    assert stats["events"] == hard_store["sent"], stats
    assert stats["segments"] >= 2 and stats["memory_rows"] > 0, stats
    written = [int(p.stem) for p in (d / "data").rglob("*.seg")]
    assert max(written) >= 8, f"only {max(written)} segments were ever written"
    heavy = hard_store["server"].query("funnel", funnel_body(["Product Viewed"], 3_600_000, "ordered"))
    assert heavy["steps"][0]["count"] > 0


def test_references_hold_while_written_to_then_idle_then_compacted(hard_store):
    d, server = hard_store["dir"], hard_store["server"]
    ref_levels = {case: chdb_levels(d / "ref.csv", *case) for case in FUNNEL_CASES}
    ref_retention = chdb_retention(d / "ref.csv")
    assert len(ref_retention) > 50

    appender = Appender(server)
    appender.start()
    try:
        while len(appender.rows) < 500:  # the writer is appending before the first query
            assert appender.error is None and appender.is_alive(), appender.error
            time.sleep(0.02)
        for case in FUNNEL_CASES:
            live = server.query("funnel", funnel_body(*case))
            # the appended persons never do step 1: every level above 0 is the reference's
            assert nonzero_levels(live, 1) == {k: n for k, n in ref_levels[case].items() if k >= 1}, case
        assert retention_table(server.query("retention", RETENTION)) == ref_retention
    finally:
        appender.stopping.set()
        appender.join(timeout=60)
    assert appender.error is None, appender.error
    assert len(appender.rows) >= 500

    # three more rows for a person the store knows already: only the memory table changes, so an
    # answer kept from before them would be stale
    last = [("noise-1", 1_714_020_000_000 + k * 1000, "Noise Seen") for k in range(3)]
    server.send([{"type": "track", "userId": p, "event": e, "timestamp": iso(ts), "messageId": f"last-{ts}"}
                 for p, ts, e in last])
    appender.rows.extend(last)

    # idle: the appended rows are part of the data now, level 0 included; the appended persons'
    # own 30-step funnel counts their rows, so a stale view of the newest rows shows
    write_csv(d / "all.csv", hard_store["rows"] + appender.rows)
    idle = {}
    for case in FUNNEL_CASES + [(("Noise Seen",) * 30, 30 * 86_400_000, "ordered")]:
        idle[case] = server.query("funnel", funnel_body(*case))
        assert nonzero_levels(idle[case]) == chdb_levels(d / "all.csv", *case), case
    idle_retention = server.query("retention", RETENTION)
    assert retention_table(idle_retention) == ref_retention
    idle_other = {kind: server.query(kind, body) for kind, body in OTHER_ANALYSES.items()}

    # compacted: the same answers, and every acknowledged touchpoint is in the export
    server.stop()
    run("compact", "--data", str(d / "data"))
    for steps, window_ms, mode in FUNNEL_CASES:
        args = ["query", "funnel", "--data", str(d / "data"), "--window", f"{window_ms / 1000}",
                "--order", mode, "--format", "json"]
        for s in steps:
            args += ["--step", s]
        assert json.loads(run(*args))["levels"] == idle[(steps, window_ms, mode)]["levels"]
    run("export", "--data", str(d / "data"), str(d / "export.jsonl"))
    messages = [json.loads(line) for line in (d / "export.jsonl").read_text().splitlines()]
    assert len({m["messageId"] for m in messages}) == len(messages) == hard_store["sent"] + len(appender.rows)

    # paths, attribution and stages: the answers of the many-segment store while it served equal
    # those after compaction and the recomputations of docs/*.md from the export
    compacted = {kind: cli_query(d / "data", kind, body) for kind, body in OTHER_ANALYSES.items()}
    for kind in OTHER_ANALYSES:
        assert idle_other[kind] == compacted[kind], kind
    journeys = persons(messages)
    nodes, ended, links, paths = recompute_paths(journeys, start="Product Viewed", steps=4)
    assert {n["id"]: (n["count"], n["ended"]) for n in compacted["paths"]["nodes"]} == \
        {i: (c, ended[i]) for i, c in nodes.items()}
    assert {(lk["source"], lk["target"]): lk["value"] for lk in compacted["paths"]["links"]} == dict(links)
    credit, totals = recompute_attribution(attribution_journeys(messages, channel))
    compare_attribution(compacted["attribution"], credit, totals)
    model = json.loads(run("query", "stages", "--model", "customer-journey", "--show-model", "--data",
                           str(d / "data"), "--format", "json"))
    rows, churned, customers, n = recompute_stages(model, journeys)
    assert (compacted["stages"]["persons"], compacted["stages"]["churned"], compacted["stages"]["customers"]) == \
        (n, churned, customers)
    for got, want in zip(compacted["stages"]["stages"], rows):
        assert (got["entered"], got["reached"], got["current"]) == (want["entered"], want["reached"], want["current"])


OTHER_ANALYSES = {
    "paths": {"start": "Product Viewed", "steps": 4, "top": 100000},
    "attribution": {"by": "channel"},
    "stages": {"model": "customer-journey"},
}


CLI_ARGS = {
    "paths": ["--start", "Product Viewed", "--steps", "4", "--top", "100000"],
    "attribution": ["--by", "channel"],
    "stages": ["--model", "customer-journey"],
}


def cli_query(data, kind, body):
    """The same analysis as `body` through the CLI on the data directory."""
    return json.loads(run("query", kind, "--data", str(data), "--format", "json", *CLI_ARGS[kind]))
