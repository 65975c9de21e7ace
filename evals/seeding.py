"""Seeds derived from names and numbers, the same on every machine and in every process (Python's `hash` of a
string is salted per process, so it cannot seed anything that must repeat)."""

from __future__ import annotations

import hashlib
from typing import Literal


def stable_seed(*parts: object, byteorder: Literal["little", "big"] = "little", bits: int = 63) -> int:
    """The first `bits` bits (of the first 8 bytes, read in `byteorder`) of sha256 over the parts joined by ":".

    63 bits by default: a non-negative int64, which every sampler (torch, vLLM, numpy) accepts as a seed."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], byteorder) & ((1 << bits) - 1)
