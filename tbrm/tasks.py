"""Built-in arithmetic problems for CPU-scale RL runs ("What is 37 + 45?" -> "82").

Two splits with a hard guarantee that they never share a problem:

- Held-out membership is a pure function of the problem: a problem (a, op, b) is *reserved* iff a stable
  hash (sha256, not Python's per-process salted ``hash``) of its canonical form falls below
  ``HELDOUT_FRACTION``. Commutative ops are canonicalised (``45 + 37`` is the same problem as
  ``37 + 45``), so a reserved problem cannot reach training in its swapped form either.
- Train streams reject every reserved problem, so a train stream of ANY length, any seed and any task
  parameters is disjoint from every held-out split. (Since reservation does not depend on the task,
  this even holds across tasks: train on digits (1, 2), evaluate on digits (2, 3).)
- The held-out split of a task is a fixed selection of ``heldout_size`` reserved problems that depends
  only on ``digits``, ``ops`` and ``heldout_size`` — not on ``seed`` nor on any train-stream seed — so
  runs with different seeds are scored on the same problems.

Operands of a d-digit problem are drawn from 0..9 for d = 1 and 10^(d-1)..10^d − 1 otherwise; both
operands have the same number of digits. Subtraction is generated with a >= b, so answers are never
negative (small models are trained on plain digit strings). Sampling picks the digit count uniformly
from ``digits``, then the op uniformly from ``ops``, then the operands uniformly.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import Iterator

from evals.problem import Problem
from evals.seeding import stable_seed

__all__ = ["ArithmeticTask", "OPS", "MAX_DIGITS", "HELDOUT_FRACTION", "MAX_HELDOUT", "is_reserved"]

OPS = ("+", "-", "*")
MAX_DIGITS = 6
# Share of all problems reserved for evaluation. 1-digit addition has only 55 distinct problems, so this
# also decides how many of those can ever be held out (about 5); larger digit counts have plenty.
HELDOUT_FRACTION = 0.1
MAX_HELDOUT = 10_000
# Strata with at most this many digits are small enough (<= 8100 problems) to enumerate exactly;
# larger ones (>= 3 digits: >= 40k reserved problems each) are sampled.
_ENUM_MAX_DIGITS = 2
# A train stream that rejects this many draws in a row is stuck (cannot happen with the fixed hash
# and HELDOUT_FRACTION; the guard turns a hypothetical infinite loop into an error).
_MAX_CONSECUTIVE_REJECTS = 10_000


def _operand_range(d: int) -> tuple[int, int]:
    return (0, 9) if d == 1 else (10 ** (d - 1), 10**d - 1)


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def _digest(a: int, op: str, b: int) -> bytes:
    if op in ("+", "*"):  # commutative: one problem, whichever way round it is written
        a, b = min(a, b), max(a, b)
    return hashlib.sha256(f"tbrm-arith:{a}{op}{b}".encode()).digest()


def _unit(a: int, op: str, b: int) -> float:
    """Stable pseudo-uniform number in [0, 1) for a problem (same on every machine and process)."""
    return int.from_bytes(_digest(a, op, b)[:8], "big") / 2**64


def is_reserved(a: int, op: str, b: int) -> bool:
    """True iff (a op b) belongs to the held-out pool; such problems never appear in a train stream."""
    return _unit(a, op, b) < HELDOUT_FRACTION


def _seed_int(*parts: object) -> int:
    # This encoding (the tuple's repr, 64 bits big-endian) fixes the held-out sets and training streams of every
    # run so far: another one would draw other problems.
    return stable_seed(repr(parts), byteorder="big", bits=64)


@functools.lru_cache(maxsize=None)
def _enumerated_reserved(d: int, op: str) -> tuple[tuple[int, int], ...]:
    """All reserved problems of a small stratum, ordered by their hash (a fixed pseudo-random order)."""
    lo, hi = _operand_range(d)
    out = []
    for a in range(lo, hi + 1):
        for b in range(lo, a + 1):  # b <= a: each unordered pair once ('-' also needs a >= b)
            if is_reserved(a, op, b):
                if op != "-" and _digest(a, op, b)[8] & 1:  # commutative: a fixed, hash-chosen orientation
                    a_, b_ = b, a
                else:
                    a_, b_ = a, b
                out.append((_unit(a, op, b), a_, b_))
    out.sort()
    return tuple((a, b) for _, a, b in out)


def _capacity(d: int, op: str) -> float:
    return len(_enumerated_reserved(d, op)) if d <= _ENUM_MAX_DIGITS else float("inf")


def _allocate(strata: list[tuple[int, str]], total: int) -> dict[tuple[int, str], int]:
    """Split ``total`` as evenly as possible over strata, moving what a small stratum cannot hold elsewhere."""
    alloc = {s: 0 for s in strata}
    open_ = list(strata)
    remaining = total
    while remaining > 0 and open_:
        share, extra = divmod(remaining, len(open_))
        still_open = []
        for i, s in enumerate(open_):
            give = min(share + (1 if i < extra else 0), _capacity(*s) - alloc[s])
            alloc[s] += int(give)
            remaining -= int(give)
            if alloc[s] < _capacity(*s):
                still_open.append(s)
        open_ = still_open
    if remaining:
        raise AssertionError("allocation exceeded capacity; ArithmeticTask validation should prevent this")
    return alloc


def _sampled_reserved(d: int, op: str, k: int) -> list[tuple[int, int]]:
    """k distinct reserved problems of a large stratum, drawn by a generator seeded by the stratum alone."""
    rng = random.Random(_seed_int("heldout", d, op))
    lo, hi = _operand_range(d)
    seen: set[bytes] = set()
    out: list[tuple[int, int]] = []
    while len(out) < k:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if op == "-" and a < b:
            a, b = b, a
        if not is_reserved(a, op, b):
            continue
        key = _digest(a, op, b)
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


@functools.lru_cache(maxsize=64)
def _heldout_triples(digits: tuple[int, ...], ops: tuple[str, ...], size: int) -> tuple[tuple[int, str, int, int], ...]:
    strata = [(d, op) for d in digits for op in ops]
    alloc = _allocate(strata, size)
    per_stratum = []
    for d, op in strata:
        k = alloc[(d, op)]
        pairs = list(_enumerated_reserved(d, op)[:k]) if d <= _ENUM_MAX_DIGITS else _sampled_reserved(d, op, k)
        per_stratum.append([(a, op, b, d) for a, b in pairs])
    # round-robin over strata, so any prefix (problems("heldout", n)) mixes digit counts and ops
    mixed = itertools.chain.from_iterable(itertools.zip_longest(*per_stratum))
    return tuple(t for t in mixed if t is not None)


def _make_problem(a: int, op: str, b: int, d: int, split: str, source: str) -> Problem:
    return Problem(
        id=f"arith/{a}{op}{b}",
        problem=f"What is {a} {op} {b}?",
        answer=str(_apply(a, op, b)),
        source=source,
        meta={"a": a, "b": b, "op": op, "digits": d, "split": split},
    )


def _as_tuple(name: str, value: object) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"ArithmeticTask.{name} must be a tuple, got {value!r}")
    out = tuple(value)  # type: ignore[arg-type]
    if not out:
        raise ValueError(f"ArithmeticTask.{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"ArithmeticTask.{name} has duplicates: {out!r} (they would skew the sampling mix)")
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class ArithmeticTask:
    """Integer arithmetic problems, e.g. ``ArithmeticTask(digits=(1, 2, 3), ops=("+", "*"))``.

    digits: operand sizes to mix (each in 1..6; both operands of a problem have the same size).
    ops: subset of ``("+", "-", "*")``.
    heldout_size: number of held-out problems (0..10000, and at most what the small strata can hold).
    seed: base seed of the train streams (does NOT change the held-out split).

    Lists are accepted (e.g. from YAML) and stored as tuples.
    """

    digits: tuple[int, ...] = (1, 2)
    ops: tuple[str, ...] = ("+",)
    heldout_size: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        digits = _as_tuple("digits", self.digits)
        for d in digits:
            if not _is_int(d) or not 1 <= d <= MAX_DIGITS:
                raise ValueError(f"ArithmeticTask.digits must be integers in 1..{MAX_DIGITS}, got {d!r}")
        ops = _as_tuple("ops", self.ops)
        for op in ops:
            if op not in OPS:
                raise ValueError(f"ArithmeticTask.ops must be a subset of {OPS}, got {op!r}")
        if not _is_int(self.heldout_size) or not 0 <= self.heldout_size <= MAX_HELDOUT:
            raise ValueError(
                f"ArithmeticTask.heldout_size must be an integer in 0..{MAX_HELDOUT}, got {self.heldout_size!r}"
            )
        if not _is_int(self.seed):
            raise ValueError(f"ArithmeticTask.seed must be an integer, got {self.seed!r}")
        capacity = sum(_capacity(d, op) for d in digits for op in ops)
        if self.heldout_size > capacity:
            raise ValueError(
                f"ArithmeticTask(digits={digits}, ops={ops}) has only {int(capacity)} held-out problems "
                f"({HELDOUT_FRACTION:.0%} of all its problems); heldout_size={self.heldout_size} is too large "
                "— lower it or add larger digit counts"
            )
        object.__setattr__(self, "digits", digits)
        object.__setattr__(self, "ops", ops)

    def train_stream(self, seed: int = 0) -> Iterator[Problem]:
        """Endless deterministic stream of training problems (same task + seed -> same sequence).

        ``seed`` picks one of many independent streams under the task's base ``self.seed``. Every yielded
        problem is outside the held-out pool (``is_reserved`` is False); problems repeat (it is a sampler).
        """
        if not _is_int(seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        rng = random.Random(_seed_int("train", self.seed, seed))
        rejects = 0
        for i in itertools.count():
            while True:
                d = rng.choice(self.digits)
                op = rng.choice(self.ops)
                lo, hi = _operand_range(d)
                a, b = rng.randint(lo, hi), rng.randint(lo, hi)
                if op == "-" and a < b:
                    a, b = b, a
                if not is_reserved(a, op, b):
                    rejects = 0
                    break
                rejects += 1
                if rejects > _MAX_CONSECUTIVE_REJECTS:
                    raise RuntimeError(f"{self}: train stream found no non-held-out problem")
            yield _make_problem(a, op, b, d, "train", f"arith:train:seed={self.seed}/{seed}:{i}")

    def problems(self, split: str, n: int | None = None, seed: int = 0) -> list[Problem]:
        """A list of problems.

        split="heldout": the fixed held-out split (first ``n`` of it, default all ``heldout_size``; any
            prefix mixes digit counts and ops). ``seed`` is ignored: the held-out split never changes.
        split="train": the first ``n`` problems of ``train_stream(seed)`` (``n`` required).
        """
        if n is not None and (not _is_int(n) or n < 0):
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if split == "heldout":
            if n is not None and n > self.heldout_size:
                raise ValueError(f"n={n} > heldout_size={self.heldout_size}")
            triples = _heldout_triples(self.digits, self.ops, self.heldout_size)[:n]
            return [
                _make_problem(a, op, b, d, "heldout", f"arith:heldout:{i}") for i, (a, op, b, d) in enumerate(triples)
            ]
        if split == "train":
            if n is None:
                raise ValueError("split='train' is endless: pass n, or iterate train_stream(seed)")
            return list(itertools.islice(self.train_stream(seed), n))
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
