"""Bytes a segment needs for the message ids the server makes (UUID version 7: time, per-process
node, counter; itinera_core::message::time_ordered_message_id) against random ones (version 4):
1M ids made at 100k a second, sorted by a random person as a flush sorts its rows, packed to 16
bytes as crates/itinera-store/src/message_ids.rs keeps them and compressed in blocks of 8,192 at
zstd level 3 as the store does. A simulation: ids without their message.
Usage: python bench/generated_ids.py (needs the `zstandard` module)
"""

import random

import zstandard


def v7(ms, sequence, node):
    tail = (node << 32) | sequence
    rand_a = (tail >> 62) & 0xFFF
    rand_b = tail & ((1 << 62) - 1)
    return ms.to_bytes(6, "big") + bytes([0x70 | (rand_a >> 8), rand_a & 0xFF]) + (rand_b | 1 << 63).to_bytes(8, "big")


def main(n=1_000_000, per_ms=100):
    rng = random.Random(1)
    node, first = rng.getrandbits(42), rng.getrandbits(32)
    made = [(rng.random(), v7(1_765_000_000_000 + i // per_ms, (first + i) & 0xFFFFFFFF, node)) for i in range(n)]
    made.sort()
    c = zstandard.ZstdCompressor(level=3)
    for name, ids in [("time-ordered (v7)", [b for _, b in made]), ("random (v4)", [rng.randbytes(16) for _ in range(n)])]:
        total = sum(len(c.compress(b"".join(ids[i : i + 8192]))) for i in range(0, n, 8192))
        print(f"{name}: {total / n:.1f} bytes per id")


if __name__ == "__main__":
    main()
