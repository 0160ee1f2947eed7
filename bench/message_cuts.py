"""What cutting the server's fields out of stored messages, and the zstd level, do to their size:
the first 200k messages of an `itinera export` (JSON lines) in blocks as a segment keeps them,
as they are and with the message id and the four times cut out, at several zstd levels; bytes
per message and compression speed. The measurement behind store format 4 (docs/storage.md).
Usage: python bench/message_cuts.py EXPORT.jsonl (needs the `zstandard` module)
"""

import sys
import time

import zstandard

KEYS = ["messageId", "timestamp", "receivedAt", "sentAt", "originalTimestamp"]


def cut(text):
    for key in KEYS:
        pattern = '"%s":"' % key
        i = text.find(pattern)
        if i >= 0:
            j = text.index('"', i + len(pattern))
            text = text[: i + len(pattern)] + text[j:]
    return text


def main(path, rows=8192):
    lines = [line.rstrip("\n") for _, line in zip(range(200_000), open(path))]
    forms = {"as they are": [l.encode() for l in lines], "fields cut": [cut(l).encode() for l in lines]}
    for name, texts in forms.items():
        for level in (3, 5, 6, 9):
            c = zstandard.ZstdCompressor(level=level)
            total = raw_bytes = 0
            start = time.time()
            for i in range(0, len(texts), rows):
                raw = b"".join(len(t).to_bytes(2, "little") + t for t in texts[i : i + rows])
                raw_bytes += len(raw)
                total += len(c.compress(raw))
            speed = raw_bytes / (time.time() - start) / 1e6
            print(f"{name}, zstd level {level}: {total / len(texts):.1f} bytes per message, {speed:.0f} MB/s")


if __name__ == "__main__":
    main(sys.argv[1])
