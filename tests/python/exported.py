"""What the end-to-end tests share, written from the docs and sharing no code with Itinera: a
generated world imported and exported, and persons stitched from the export."""

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from test_funnel_reference import run


class Stitch:
    """Persons from messages that carry two ids (userId with anonymousId or previousId):
    union-find, the smallest id naming the person (docs/identity.md)."""

    def __init__(self, messages):
        self.parent = {}
        for m in messages:
            ids = [m[k] for k in ("userId", "anonymousId", "previousId") if m.get(k)]
            for other in ids[1:]:
                a, b = self.find(ids[0]), self.find(other)
                if a != b:
                    self.parent[max(a, b)] = min(a, b)

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def person(self, m):
        """The person a message belongs to."""
        return self.find(m.get("userId") or m.get("anonymousId"))


@contextmanager
def exported_world(customers, seed):
    """A generated world imported into a fresh data directory and exported again: the directory
    (with `data/`, `w.jsonl` and its truth) and the exported messages."""
    d = Path(tempfile.mkdtemp())
    try:
        run("generate", "--out", str(d / "w.jsonl"), "--customers", str(customers), "--seed", str(seed))
        run("import", "--data", str(d / "data"), str(d / "w.jsonl"), "--quiet")
        run("export", "--data", str(d / "data"), str(d / "e.jsonl"))
        yield d, [json.loads(line) for line in (d / "e.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(d, ignore_errors=True)
