"""UUIDv7 identifiers: time-ordered, so new rows land at the right edge of a b-tree index."""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    # 48 bits of Unix milliseconds | version 7 | 12 random bits | variant 0b10 | 62 random bits
    ms = time.time_ns() // 1_000_000 & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = rand >> 68 & 0xFFF, rand & ((1 << 62) - 1)
    return uuid.UUID(int=ms << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)
