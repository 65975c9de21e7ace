"""The one answer grader behind training rewards and evaluation scores.

`judge` grades one (response, gold) pair in the current process: extract the answer
(`evals.extraction`), parse both sides with math-verify and compare them. It never times out by itself:
math-verify's own timeouts use ``signal.alarm``, which raises outside the main thread (training calls
the grader from threads), so they are switched off here.

`Verifier` runs `judge` in a pebble process pool instead, which is where time limits live: a pair whose
grading runs past ``timeout_s`` (sympy on ``9^{9^{9^{9}}}`` would run for hours) comes back as
``Outcome.TIMEOUT`` and its worker is killed and replaced. Every pair comes back with a `Verdict`; a
grader failure is an ``UNPARSED`` verdict that is logged and counted, never a crashed batch and never a
silent WRONG.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum

from math_verify import parse, verify
from pebble import ProcessPool
from sympy import Basic, Float, Rational
from sympy.matrices import MatrixBase

from evals.extraction import extract_answer, normalize_gold

log = logging.getLogger(__name__)


class Outcome(str, Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    UNPARSED = "unparsed"  # no answer could be extracted from the response, or none of it parsed
    TIMEOUT = "timeout"  # grading ran past the Verifier's timeout_s


@dataclass(frozen=True)
class Verdict:
    """How one response was graded.

    extracted: the answer text taken from the response (None if none was found).
    extraction: how it was found, the `Extraction.method` ("boxed", "fallback" or "none").
    answer_key: canonical string of the parsed prediction, equal for equivalent answers where cheap to
        tell ("0.5", "\\frac{1}{2}" and "1/2" all give "1/2"), for grouping answers in majority voting;
        None when nothing was parsed.
    seconds: time spent grading (the timeout for TIMEOUT verdicts).
    """

    outcome: Outcome
    extracted: str | None
    extraction: str
    answer_key: str | None
    seconds: float

    @property
    def correct(self) -> bool:
        return self.outcome is Outcome.CORRECT


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once per process that we disabled its timeouts; we did, on purpose (see top)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


def _parse(answer: str) -> list:
    # Boxing makes math-verify's LaTeX extractor take the whole string as the answer, for LaTeX
    # ("\frac12") and plain text ("3/4", "2,125") alike. parsing_timeout=None: see the module docstring.
    return parse(f"\\boxed{{{answer}}}", parsing_timeout=None)


def _is_math(x: object) -> bool:
    return isinstance(x, (Basic, MatrixBase))


def _answer_key(parsed: list, extracted: str) -> str:
    """sympy's printout of the parsed answer, floats made exact ("27.0" -> "27"); else the bare text."""
    for x in parsed:
        if _is_math(x):
            try:
                if isinstance(x, Float):
                    x = Rational(str(x))
                return str(x)
            except Exception:  # e.g. an integer too long for str(): Python's digit limit
                break
    return re.sub(r"\s+", "", extracted)


def judge(response: str, gold: str, allow_fallback: bool = True) -> Verdict:
    """Grade `response` against `gold` in this process, without any time limit (use `Verifier` for that).

    Raises ValueError for a gold answer that cannot be graded (None, empty, unparseable).
    """
    start = time.perf_counter()
    found = extract_answer(response, allow_fallback)

    def verdict(outcome: Outcome, key: str | None = None) -> Verdict:
        return Verdict(outcome, found.answer, found.method, key, time.perf_counter() - start)

    if found.answer is None:
        return verdict(Outcome.UNPARSED)
    pred = _parse(found.answer)
    if not pred:
        return verdict(Outcome.UNPARSED)
    gold_parsed = _parse(normalize_gold(gold))
    if not gold_parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")

    # Order matters: math-verify's verify(gold, target) is asymmetric.
    if verify(gold_parsed, pred, timeout_seconds=None):
        return verdict(Outcome.CORRECT, _answer_key(pred, found.answer))
    if not any(_is_math(x) for x in pred):
        # math-verify returns the raw string when sympy could not read it, and compares strings only;
        # a non-matching unreadable answer ("\boxed{!!}") is a format failure, not a wrong value.
        return verdict(Outcome.UNPARSED)
    return verdict(Outcome.WRONG, _answer_key(pred, found.answer))


def _init_worker() -> None:
    # The first parse builds math-verify's LaTeX grammar (~0.1 s): pay it at worker start, not per pair.
    judge("\\boxed{1}", "1")


def _mp_context():
    """forkserver (spawn where missing): forking a parent that runs torch threads / CUDA is unsafe.

    The forkserver preloads this module, so a worker (including each replacement for one killed by a
    timeout) starts with math-verify already imported instead of importing it again (~0.5 s). The preload
    list is process-wide and only read when the forkserver first starts; "__main__" is the stdlib default.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__])
    return ctx


class Verifier:
    """A pool of warm grader processes with a per-pair time limit. Thread-safe; use as a context manager.

    Every pair comes back as a Verdict: TIMEOUT past `timeout_s` (the worker is killed and replaced),
    UNPARSED (logged, counted in `errors`) if the grader fails. `stats` counts outcomes seen so far.

    Like any spawn/forkserver child, each worker re-imports the parent's ``__main__`` script, so entry
    scripts should import heavy modules (torch) inside functions, or every worker start pays for them.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, allow_fallback: bool = True):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.timeout_s = float(timeout_s)
        self.allow_fallback = allow_fallback
        self.stats: Counter[Outcome] = Counter()
        self.errors = 0  # grader failures (exceptions, dead workers), each also an UNPARSED verdict
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPool:
        pool = ProcessPool(max_workers=self.workers, initializer=_init_worker, context=_mp_context())
        # pebble starts lazily; a first task starts the workers (and their warm-up) now, in the background.
        pool.schedule(_init_worker)
        return pool

    def _live_pool(self) -> ProcessPool:
        """The pool, replaced first if pebble gave up on it (it does when a worker dies while all idle)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("Verifier is closed")
            if not self._pool.active:
                log.error("verifier process pool broke (a worker died while idle); starting a fresh one")
                self._pool.stop()
                self._pool.join()
                self._pool = self._new_pool()
            return self._pool

    def verify_batch(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        """Verdicts for (response, gold) pairs, in order. Raises ValueError at once for a bad gold."""
        pairs = [(response, normalize_gold(gold)) for response, gold in pairs]
        verdicts = self._grade(pairs, retry_broken=True)
        # Pairs lost to a broken pool (None) are graded once more on a fresh one, not scored as failures.
        lost = [i for i, v in enumerate(verdicts) if v is None]
        if lost:
            for i, verdict in zip(lost, self._grade([pairs[i] for i in lost], retry_broken=False)):
                verdicts[i] = verdict
        with self._lock:
            self.stats.update(v.outcome for v in verdicts)
        return verdicts

    def verify(self, response: str, gold: str) -> Verdict:
        return self.verify_batch([(response, gold)])[0]

    def _grade(self, pairs: list[tuple[str, str]], retry_broken: bool) -> list[Verdict | None]:
        pool = self._live_pool()
        # All at once: workers pull tasks as they free up, and each timeout runs from a task's own start.
        futures = [
            pool.schedule(judge, args=(response, gold, self.allow_fallback), timeout=self.timeout_s)
            for response, gold in pairs
        ]
        return [self._result(future, response, retry_broken) for future, (response, _) in zip(futures, pairs)]

    def _result(self, future, response: str, retry_broken: bool) -> Verdict | None:
        try:
            return future.result()
        except FutureTimeoutError:
            outcome, seconds = Outcome.TIMEOUT, self.timeout_s
            found = extract_answer(response, self.allow_fallback)
            log.warning("grading timed out after %.1f s; extracted answer %.200r", seconds, found.answer)
        except BrokenProcessPool:
            if retry_broken:
                return None
            raise  # a fresh pool broke at once: the grader cannot run here at all
        except Exception:  # the grader raised, or its worker died (pebble.ProcessExpired)
            outcome, seconds = Outcome.UNPARSED, 0.0
            found = extract_answer(response, self.allow_fallback)
            log.exception("grader failed; scored UNPARSED. Response (start): %.200r", response)
            with self._lock:
                self.errors += 1
        return Verdict(outcome, found.answer, found.method, None, seconds)

    def close(self) -> None:
        """Finish pending work and stop the workers. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._pool.active:
            self._pool.close()
        else:  # a broken pool never drains its queue; close() would wait for it forever
            self._pool.stop()
        self._pool.join()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
