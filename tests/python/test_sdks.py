"""Events sent through official Segment and RudderStack SDKs (gzip on, host pointed at a local
Itinera) come back out of the store unchanged."""

import datetime as dt
import json
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ITINERA_BIN", ROOT / "target" / "debug" / "itinera"))


def run(*args):
    out = subprocess.run([str(BIN), *args], check=True, capture_output=True, text=True, env={**os.environ, "ITINERA_LOG": "warn"})
    return out.stdout


@pytest.fixture()
def server():
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "data"
        keys = json.loads(run("keys", "create", "--data", str(data), "--format", "json"))
        # port 0: the server announces the address it listens on in its first line
        proc = subprocess.Popen([str(BIN), "serve", "--data", str(data), "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        assert line.startswith("Itinera is running at "), line
        url = line.split()[-1].rstrip("/")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        try:
            yield {"url": url, "data": data, "write_key": keys["write_key"], "proc": proc}
        finally:
            if proc.poll() is None:
                proc.kill()


def stop_and_export(srv):
    srv["proc"].send_signal(signal.SIGTERM)
    assert srv["proc"].wait(timeout=30) == 0
    out = Path(srv["data"]) / "export.jsonl"
    run("export", "--data", str(srv["data"]), str(out))
    return {m["messageId"]: m for m in map(json.loads, out.read_text().splitlines())}


WHEN = dt.datetime(2025, 5, 4, 12, 30, 0, tzinfo=dt.timezone.utc)
PROPS = {"revenue": 42.5, "currency": "EUR", "products": [{"product_id": "tent-2p", "quantity": 1}], "coupon": None}
CONTEXT = {"campaign": {"source": "newsletter", "medium": "email", "name": "spring"}, "locale": "de-DE",
           "page": {"url": "https://shop.example/checkout", "path": "/checkout", "referrer": "https://www.google.de/"}}


def check_roundtrip(stored, library):
    t = stored["sdk-track-1"]
    assert t["type"] == "track" and t["event"] == "Order Completed" and t["userId"] == "user-1"
    assert t["properties"] == PROPS
    for k, v in CONTEXT.items():
        assert t["context"][k] == v
    assert t["context"]["library"]["name"] == library
    assert t["originalTimestamp"].startswith("2025-05-04T12:30:00")
    assert t["timestamp"].startswith("2025-05-04T12:30:0"), "clock skew correction keeps a correct clock's time"
    assert "receivedAt" in t and "sentAt" in t
    i = stored["sdk-identify-1"]
    # RudderStack's SDK sends identify traits in context.traits; both shapes are kept as sent
    traits = i.get("traits") or i["context"]["traits"]
    assert traits == {"email": "ada@example.com", "role": "champion"}
    assert i["anonymousId"] == "anon-1" and i["userId"] == "user-1"
    g = stored["sdk-group-1"]
    assert g["groupId"] == "acme" and g["traits"] == {"name": "Acme GmbH", "employees": 120}
    p = stored["sdk-page-1"]
    assert p["name"] == "Pricing" and p["properties"]["path"] == "/pricing"
    s = stored["sdk-screen-1"]
    assert s["type"] == "screen" and s["name"] == "Home"
    a = stored["sdk-alias-1"]
    assert a["previousId"] == "anon-1" and a["userId"] == "user-1"


def send_all(client):
    client.identify("user-1", {"email": "ada@example.com", "role": "champion"}, anonymous_id="anon-1", message_id="sdk-identify-1")
    client.track("user-1", "Order Completed", PROPS, context=CONTEXT, timestamp=WHEN, message_id="sdk-track-1")
    client.group("user-1", "acme", {"name": "Acme GmbH", "employees": 120}, message_id="sdk-group-1")
    client.page("user-1", "Docs", "Pricing", {"path": "/pricing"}, message_id="sdk-page-1")
    client.screen("user-1", "App", "Home", {}, message_id="sdk-screen-1")
    client.alias("anon-1", "user-1", message_id="sdk-alias-1")
    client.flush()


def test_segment_python_sdk(server):
    from segment.analytics import Client

    errors = []
    client = Client(server["write_key"], host=server["url"], gzip=True, sync_mode=True, on_error=lambda e, b: errors.append(e))
    send_all(client)
    assert errors == []
    stored = stop_and_export(server)
    check_roundtrip(stored, "analytics-python")


def test_rudderstack_python_sdk(server):
    from rudderstack.analytics import Client

    errors = []
    client = Client(server["write_key"], host=server["url"], gzip=True, sync_mode=True, on_error=lambda e, b: errors.append(e))
    send_all(client)
    assert errors == []
    stored = stop_and_export(server)
    check_roundtrip(stored, "analytics-python")


def test_wrong_key_is_reported_to_the_sdk(server):
    from segment.analytics import Client

    from segment.analytics.request import APIError

    client = Client("wk_not_a_key", host=server["url"], gzip=True, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as e:
        client.track("u", "E")
    assert e.value.status == 401
    assert "unknown or revoked write key" in e.value.message
