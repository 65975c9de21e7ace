"""The one answer grader behind training rewards and evaluation scores.

`judge` grades one (response, gold) pair in the current process:

1. the gold is normalized (`normalize_gold`) and parsed whole, as if boxed, as verl and lighteval do;
2. the response goes through our text rules (`evals.grading.extraction.apply_text_rules`), then Math-Verify's own
   extraction: LaTeX and plain expressions, ``\\boxed{}`` answers first (`MATH_VERIFY_EXTRACTION`);
3. Math-Verify compares the two, leaving out values that parse to something undefined (zoo, nan: a time "1:00"
   read as 1/00) which equal nothing but their very text; our comparison rules then correct the cases it gets
   wrong, a list in another order than the gold's among them (`evals.grading.extraction.RULES` lists every rule
   and why);
4. only in lenient mode, and only when steps 2-3 found no answer at all: the "answer phrase, else last
   number" extraction (`evals.grading.extraction.lenient_answer`), flagged ``extraction == "lenient"``.

`judge_plain` is plain Math-Verify with library defaults, the reference for ``tbrm grade --audit``.

Neither times out by itself: math-verify's own timeouts use ``signal.alarm``, which raises outside the main
thread (training calls the grader from threads) and cannot interrupt sympy inside one long C call, so they
are switched off here. `Verifier` runs them in a pebble process pool instead, which is where time limits
live. Answers go to the workers in chunks (samples of one problem together), and a watchdog follows each
worker's progress through shared memory: when the answer a worker is on runs past ``timeout_s`` (sympy on
``9^{9^{9^{9}}}`` would run for hours) that worker alone is killed and replaced, the answer comes back as
``Outcome.TIMEOUT``, and the rest of its chunk is graded again. Identical (response, gold) pairs, common
among rollouts, are graded once and cached. Every pair comes back with a `Verdict`; a grader failure is an
``UNPARSED`` verdict that is logged and counted, never a crashed batch and never a silent WRONG.

Speed (``benchmarks/grade_speed.py``): most of a grader's time is latex2sympy2's ANTLR parse of LaTeX
answers, then sympy's simplify() in verify(). Workers (`_speed_up_math_verify`) keep a large parse cache,
build plain numbers without the parser (`number_latex2sympy`), parse in ANTLR's SLL mode first where it can
succeed (`sll_first_latex2sympy`), start from a warmed-up parser (`evals.grading._warm_grader`), skip verify() when
both sides parse to the same object, and skip simplify() where evaluation already shows two answers differ
(`certainly_unequal`). Each gives math-verify's own result, and each is tested against it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import re
import threading
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures import TimeoutError as FutureTimeoutError
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.grader import sympy_symbolic_eq as _stock_symbolic_eq
from pebble import ProcessPool
from latex2sympy2_extended.sets import FiniteSet as WrittenFiniteSet
from sympy import (Add, And, Basic, Eq, Expr, Float, Integer, Interval, Mul, Number, NumberSymbol, Pow, Rational, Set,
                   Symbol, Tuple, UnevaluatedExpr, preorder_traversal)
from sympy.core.numbers import ComplexInfinity, Infinity, NaN, NegativeInfinity
from sympy.core.relational import Relational
from sympy.functions import cos, exp, sin, tan
from sympy.functions import log as ln  # "log" is this module's logger
from sympy.matrices import MatrixBase

from evals.grading.extraction import (
    apply_text_rules,
    decimal_comma_value,
    is_number,
    is_unevaluated_arithmetic,
    lenient_answer,
    normalize_gold,
)
from evals.grading.latex import last_boxed, warm_latex_parser

log = logging.getLogger(__name__)

# Math-Verify's extraction as lighteval configures it for math: boxed answers before answer phrases.
MATH_VERIFY_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


class Outcome(str, Enum):
    CORRECT = "correct"
    WRONG = "wrong"
    UNPARSED = "unparsed"  # no answer could be extracted from the response, or none of it parsed
    TIMEOUT = "timeout"  # grading ran past the Verifier's timeout_s


@dataclass(frozen=True)
class Verdict:
    """How one response was graded.

    extracted: the answer text taken from the response (None if none was found).
    extraction: how it was found: "boxed", "text" (Math-Verify, unboxed), "lenient" (the opt-in fallback;
        counted in summaries) or "none".
    answer_key: canonical string of the parsed prediction, equal for equivalent answers where cheap to
        tell ("0.5", "\\frac{1}{2}" and "1/2" all give "1/2"), for grouping answers in majority voting;
        None when nothing was parsed.
    seconds: time spent grading (the timeout for TIMEOUT verdicts; a cached verdict keeps its first time).
    rules: names of our rules (`evals.grading.extraction.RULES`) that changed the text or the verdict.
    """

    outcome: Outcome
    extracted: str | None
    extraction: str
    answer_key: str | None
    seconds: float
    rules: tuple[str, ...] = ()

    @property
    def correct(self) -> bool:
        return self.outcome is Outcome.CORRECT


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once per process that we disabled its timeouts; we did, on purpose (see top)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list:
    """A normalized gold parsed whole (boxing makes the LaTeX extractor take all of it, "3/4" and "2,125"
    included). Cached: every sample of a problem shares its gold. parsing_timeout=None: see the top."""
    parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)
    if not parsed:
        raise ValueError(f"math-verify cannot parse the gold answer {gold!r}")
    return parsed


def _is_math(x: object) -> bool:
    return isinstance(x, (Basic, MatrixBase))


def _undefined(x: object) -> bool:
    """A parsed value that is undefined or an unsigned infinity anywhere: zoo (a division by zero, as in "1:00"
    read as the ratio 1/00) or nan (0/0). Such a value equals nothing, not even itself: every whole-hour time
    parses to zoo."""
    return isinstance(x, Basic) and any(isinstance(a, (ComplexInfinity, NaN)) for a in preorder_traversal(x))


def _defined(parsed: list) -> list:
    """A parse without its undefined values (`_undefined`); the extracted text stays, so that only the very
    same text ("12:00" for "12:00") matches an answer that parses to one."""
    return [x for x in parsed if not _undefined(x)]


def _identical(gold: list, pred: list) -> bool:
    """The same parsed answer on both sides (commonly the very object, from math-verify's parse cache):
    math-verify's verify would say equal after its first check, string equality; skip its set-up."""
    return any(_is_math(g) and _is_math(p) and (g is p or g == p) for g in gold for p in pred)


def _written_order(x: object) -> tuple | None:
    """The items of a parsed list or tuple in the order they were written; None for anything else. A sympy
    FiniteSet sorts its items, latex2sympy2's keeps the written order beside them (``_unsorted_args``); an
    open interval "(1, 2)" is also the pair (1, 2), as Math-Verify reads it against a list."""
    if isinstance(x, Tuple):
        return x.args
    if isinstance(x, WrittenFiniteSet) and getattr(x, "_unsorted_args", None) is not None:
        return tuple(x._unsorted_args)
    if isinstance(x, Interval) and x.left_open and x.right_open:
        return (x.start, x.end)
    return None


_SET_BRACES_RE = re.compile(r"\\\{|\\lbrace\b")


def _gold_is_list(gold: str, gold_parsed: list) -> bool:
    """A gold that is a list ("4, 10, -2", or several boxes) rather than a set ("\\{1, 2\\}"): Math-Verify
    compares it as a set, in any order (rule list-order)."""
    return any(isinstance(g, WrittenFiniteSet) for g in gold_parsed) and not _SET_BRACES_RE.search(gold)


def _in_written_order(parsed: list) -> list:
    """Lists and tuples as tuples in their written order, which Math-Verify compares item by item."""
    out = []
    for x in parsed:
        items = _written_order(x) if isinstance(x, (WrittenFiniteSet, Tuple)) else None
        out.append(Tuple(*items) if items is not None else x)
    return out


def _set_vs_relation(gold: list, pred: list) -> bool:
    return any(isinstance(g, Set) for g in gold) and any(isinstance(p, (Relational, And)) for p in pred)


def _equation_sides(x) -> tuple | None:
    """(first left side, last right side) of an equation or a chain "x = a = b" (an And of Eqs, kept in
    written order by latex2sympy2 in ``_unsorted_args``), the sides math-verify compares; None otherwise."""
    if isinstance(x, Eq):
        return x.lhs, x.rhs
    if isinstance(x, And):
        parts = getattr(x, "_unsorted_args", None) or x.args
        if all(isinstance(p, Eq) for p in parts):
            return parts[0].lhs, parts[-1].rhs
    return None


def _unsolved_equation(gold: list, pred: list) -> bool:
    """The answer is "x = <something with x in it>" and the gold is not a relation (rule unsolved-equation)."""
    if any(isinstance(g, (Relational, And)) for g in gold):
        return False
    answer = next((p for p in pred if _is_math(p)), None)
    sides = _equation_sides(answer)
    return sides is not None and isinstance(sides[0], Symbol) and sides[0] in sides[1].free_symbols


def _answer_key(parsed: list, extracted: str) -> str:
    """sympy's printout of the parsed answer, floats made exact ("27.0" -> "27"); else the bare text."""
    for x in parsed:
        if _is_math(x) and not _undefined(x):  # every whole-hour time parses to zoo: keyed by its text
            try:
                if isinstance(x, Float):
                    x = Rational(str(x))
                return str(x)
            except Exception:  # e.g. an integer too long for str(): Python's digit limit
                break
    return re.sub(r"\s+", "", extracted)


def _extracted_text(parsed: list) -> str | None:
    """Math-Verify's string of the answer it extracted (the last item in "first_match" fallback mode)."""
    strings = [x for x in parsed if isinstance(x, str)]
    return strings[-1] if strings else None


def judge(response: str, gold: str, lenient: bool = False) -> Verdict:
    """Grade `response` against `gold` in this process, without any time limit (use `Verifier` for that).

    Raises ValueError for a gold answer that cannot be graded (None, empty, unparseable).
    """
    start = time.perf_counter()
    gold = normalize_gold(gold)
    gold_parsed = _parse_gold(gold)
    text, rules = apply_text_rules(response)
    pred = parse(text, MATH_VERIFY_EXTRACTION, parsing_timeout=None)
    extracted = _extracted_text(pred)
    method = "boxed" if "box" in text and last_boxed(text) else "text"

    def verdict(outcome: Outcome, key: str | None = None, extra: tuple[str, ...] = ()) -> Verdict:
        return Verdict(outcome, extracted, method if extracted is not None else "none", key,
                       time.perf_counter() - start, rules + extra)

    if not any(_is_math(x) for x in pred) and lenient:
        found = lenient_answer(response)
        if found is not None:
            pred = parse(f"\\boxed{{{found}}}", parsing_timeout=None)
            extracted, method = found, "lenient"
    if not pred:
        return verdict(Outcome.UNPARSED)

    # Order matters: math-verify's verify(gold, target) is asymmetric. Our "set-relation" rule is
    # math-verify's allow_set_relation_comp, switched on only where it can matter (it costs a second check).
    # Undefined values are left out of the comparison (see `_undefined`).
    gold_cmp, pred_cmp = _defined(gold_parsed), _defined(pred)
    correct = _identical(gold_cmp, pred_cmp) or verify(gold_cmp, pred_cmp, timeout_seconds=None)
    if not correct and _set_vs_relation(gold_cmp, pred_cmp):
        correct = verify(gold_cmp, pred_cmp, timeout_seconds=None, allow_set_relation_comp=True)
        rules += ("set-relation",) if correct else ()
    if correct and _gold_is_list(gold, gold_cmp) and not verify(
            _in_written_order(gold_cmp), _in_written_order(pred_cmp), timeout_seconds=None):
        return verdict(Outcome.WRONG, _answer_key(pred, extracted or ""), ("list-order",))
    if correct and _unsolved_equation(gold_parsed, pred):
        return verdict(Outcome.WRONG, _answer_key(pred, extracted or ""), ("unsolved-equation",))
    if correct and is_number(gold) and extracted is not None and is_unevaluated_arithmetic(extracted):
        return verdict(Outcome.WRONG, _answer_key(pred, extracted), ("unevaluated-arithmetic",))
    if correct:
        return verdict(Outcome.CORRECT, _answer_key(pred, extracted or ""))
    if extracted is not None and decimal_comma_value(extracted, gold):
        # keyed by the side written with a decimal point, so that "3,5" groups with "3.5" in majority votes
        key = _answer_key(pred, extracted) if "," in gold else _answer_key(gold_parsed, gold)
        return verdict(Outcome.CORRECT, key, ("decimal-comma",))
    if not any(_is_math(x) for x in pred):
        # math-verify returns the raw string when sympy could not read it, and compares strings only;
        # a non-matching unreadable answer ("\boxed{!!}") is a format failure, not a wrong value.
        return verdict(Outcome.UNPARSED)
    return verdict(Outcome.WRONG, _answer_key(pred, extracted or ""))


def judge_plain(response: str, gold: str) -> Verdict:
    """Plain Math-Verify: ``verify(parse(gold), parse(response))`` with the library's defaults, the gold
    boxed first as verl and lighteval do (a bare LaTeX gold is otherwise often not extracted at all)."""
    start = time.perf_counter()
    gold = normalize_gold(gold)
    pred = parse(response, parsing_timeout=None)
    extracted = _extracted_text(pred)
    correct = bool(pred) and verify(_parse_gold(gold), pred, timeout_seconds=None)
    outcome = Outcome.CORRECT if correct else Outcome.WRONG if any(_is_math(x) for x in pred) else Outcome.UNPARSED
    key = _answer_key(pred, extracted or "") if outcome is not Outcome.UNPARSED else None
    return Verdict(outcome, extracted, "text" if extracted is not None else "none", key,
                   time.perf_counter() - start)


# Worker progress, shared with the parent: per chunk slot (started flag, index of the answer being graded,
# time.monotonic() when it started; CLOCK_MONOTONIC is system-wide on Linux). The parent's watchdog kills a
# worker whose current answer has run past timeout_s, and knows which answer that was.
_PROGRESS = None
_SLOT_WIDTH = 3


def _grade_chunk(pairs: Sequence[tuple[str, str]], lenient: bool, plain: bool, timeout_s: float,
                 slot: int = -1) -> list:
    """Worker side: grade a chunk of pairs; each item is a Verdict, or the traceback text of a grader bug.

    An answer that ran past `timeout_s` is a TIMEOUT, whether or not the watchdog caught it in time.
    """
    out: list = []
    base = slot * _SLOT_WIDTH
    for i, (response, gold) in enumerate(pairs):
        if _PROGRESS is not None and slot >= 0:
            # Written start time first, started flag last: the parent reads them in the other order.
            _PROGRESS[base + 2] = time.monotonic()
            _PROGRESS[base + 1] = i
            _PROGRESS[base] = 1.0
        try:
            v = judge_plain(response, gold) if plain else judge(response, gold, lenient)
        except Exception:
            out.append(traceback.format_exc(limit=8))
            continue
        if v.seconds > timeout_s:
            v = Verdict(Outcome.TIMEOUT, v.extracted, v.extraction, None, timeout_s, v.rules)
        out.append(v)
    return out


# The commonest answers: an integer, a decimal, \frac{a}{b} (\dfrac, \tfrac) or a/b of integers, with an
# optional leading minus. ASCII digits only; spaces, "+", percentages, zero denominators and anything else go
# to the ANTLR parse.
_NUMBER_LATEX_RE = re.compile(r"(-?)(?:([0-9]+)|([0-9]*\.[0-9]+)|\\[dt]?frac\{(-?[0-9]+)\}\{(-?[0-9]+)\}"
                              r"|([0-9]+)/([0-9]+))")


_DIGITS_RE = re.compile(r"[0-9]+")


def _signed_integer(text: str):
    # latex2sympy reads "-7" as unary minus on the number 7 (`convert_unary`: -Integer(7)).
    return -Integer(text[1:]) if text.startswith("-") else Integer(text)


def number_latex2sympy(latex: str):
    """latex2sympy2's result for a plain number, built without its parser; None for any other input.

    The same objects latex2sympy2 builds (`_Latex2Sympy.parse_number`, `convert_frac`, the DIV branch of
    `convert_mp`, `convert_unary`): Integer for integers ("007" -> 7), sympy.Number(text) for decimals (a
    Float whose precision follows the digits), Rational(Integer, Integer) for fractions, and a leading minus
    as sympy negation. ``tests/test_verifier.py`` checks type, srepr and precision against the ANTLR parse
    (hypothesis, and every gold answer of the benchmarks).
    """
    m = _NUMBER_LATEX_RE.fullmatch(latex)
    if m is None:
        return None
    sign, integer, decimal, top, bottom, num, den = m.groups()
    try:
        if integer is not None:
            value = Integer(integer)
        elif decimal is not None:
            value = Number(decimal)
        else:
            top, bottom = (top, bottom) if top is not None else (num, den)
            if not bottom.strip("-0"):
                return None  # x/0: sympy's zoo, and -zoo is an unevaluated Mul; leave it to the parser
            value = Rational(_signed_integer(top), _signed_integer(bottom))
    except ValueError:  # more digits than Python converts: leave the number to the parser, which decides
        return None
    return -value if sign else value


# A letter with a superscript or subscript ("x^2 - x - 1", "C_{1}", "5r^5"): this grammar's SLL prediction
# always fails on it (no case otherwise on 6,000 benchmark responses), and a failing SLL parse costs as much
# as the LL one, so such answers go to LL at once. "e^" and commands ("\\log_2") are not matched.
_LL_ONLY_RE = re.compile(r"(?<![\\A-Za-z])(?!e\s*\^)[A-Za-z]\s*[\^_]")


def sll_first_latex2sympy(latex_str: str, *args, normalization_config=None, **kwargs):
    """latex2sympy2's `latex2sympy`: plain numbers built directly (`number_latex2sympy`), other input parsed
    in ANTLR's SLL prediction mode first and in its default LL mode only if that fails (digit strings inside
    built directly too, `_LlLatex2Sympy`).

    ANTLR guarantees that an SLL parse either returns the parse tree LL would return or reports a syntax
    error (PredictionMode.SLL), so results are unchanged while parses get faster (benchmarks/grade_speed.py); the
    LaTeX parse is most of a grader's time. Inputs that only LL can parse (or that do not parse at all) pay both,
    except those `_LL_ONLY_RE` recognizes, which go to LL at once. ``tests/test_verifier.py`` checks the equality on
    real answers.
    """
    if normalization_config is not None:  # math-verify always passes None; anything else as latex2sympy2 does
        return _stock_latex2sympy(latex_str, *args, normalization_config=normalization_config, **kwargs)
    number = number_latex2sympy(latex_str)
    if number is not None:
        return number
    if not _LL_ONLY_RE.search(latex_str):
        try:
            return _SllLatex2Sympy(*args, **kwargs).parse(latex_str)
        except Exception:
            pass
    return _LlLatex2Sympy(*args, **kwargs).parse(latex_str)


try:
    from antlr4.atn.PredictionMode import PredictionMode
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    from latex2sympy2_extended.latex2sympy2 import latex2sympy as _stock_latex2sympy

    class _LlLatex2Sympy(_Latex2Sympy):
        """latex2sympy2's converter as `latex2sympy` builds it, but digit strings become Integer at once: its
        `parse_number` calls sympy.Number(text), which for a string runs sympy's expression parser (~0.5 ms
        a number) to build the same Integer."""

        def __init__(self, variable_values=None, is_real=None, convert_degrees=False, conversion_config=None):
            kwargs = {"config": conversion_config} if conversion_config is not None else {}
            super().__init__(variable_values, is_real, convert_degrees, **kwargs)

        def parse_number(self, text):
            digits = text.replace(",", "")
            if _DIGITS_RE.fullmatch(digits):
                try:
                    return Integer(digits)
                except ValueError:  # more digits than Python converts: as latex2sympy2 does
                    pass
            return super().parse_number(text)

    class _SllLatex2Sympy(_LlLatex2Sympy):
        def create_parser(self, latex_str):
            parser = super().create_parser(latex_str)
            parser._interp.predictionMode = PredictionMode.SLL
            return parser
except ImportError:  # another latex2sympy2 layout: keep math-verify's parser as it is
    _SllLatex2Sympy = _LlLatex2Sympy = None


# What `certainly_unequal` evaluates: numbers, real symbols ("x" as latex2sympy2 makes it for a real
# answer), arithmetic with small rational exponents, exp, log, sin, cos and tan. Power towers such as
# 9^{9^{9^{9}}}, other functions, sets and anything else are left to sympy, and to the time limit.
_ARITHMETIC_NODES = (Number, NumberSymbol, Add, Mul, UnevaluatedExpr, exp, ln, sin, cos, tan)
_NOT_FINITE = (NaN, ComplexInfinity, Infinity, NegativeInfinity)
_MAX_EXPONENT = 64


def _plain_arithmetic(x, symbols: set) -> bool:
    """True if `x` is built from `_ARITHMETIC_NODES` and real symbols only; adds those symbols to `symbols`."""
    for node in preorder_traversal(x):
        if isinstance(node, Pow):
            e = node.exp
            if not (isinstance(e, Rational) and abs(e.p) <= _MAX_EXPONENT and e.q <= _MAX_EXPONENT):
                return False
        elif type(node) is Symbol:
            if node._assumptions_orig != {"real": True}:
                return False
            symbols.add(node)
        elif not isinstance(node, _ARITHMETIC_NODES) or isinstance(node, _NOT_FINITE):
            return False
    return True


def certainly_unequal(a, b) -> bool:
    """True only when a - b is, at one real point (each real symbol set to its own positive rational), a
    real number that evaluates to full accuracy to a nonzero value. Then a - b is not identically zero, so
    simplify(a - b) cannot be zero, and math-verify's symbolic check says "not equal" after a simplify()
    that costs milliseconds to tens of them. False means "not known": equal there, complex there, or
    anything with a function, a set, a non-real symbol, ..."""
    symbols: set = set()
    if not (isinstance(a, Expr) and isinstance(b, Expr) and _plain_arithmetic(a, symbols)
            and _plain_arithmetic(b, symbols)):
        return False
    point = {x: Rational(10 * k + 13, 4 * k + 7) for k, x in enumerate(sorted(symbols, key=str))}
    try:
        value = (a - b).evalf(30, subs=point, strict=True)
    except Exception:  # PrecisionExhausted (e.g. an exact zero), or anything else: let sympy decide
        return False
    return isinstance(value, Float) and value != 0


def disproving_symbolic_eq(a, b) -> bool:
    """math-verify's `sympy_symbolic_eq` (simplify(a - b) is zero), answered at once when `certainly_unequal`
    tells the two sides apart; the same result, since simplify keeps an expression's values."""
    if certainly_unequal(a, b):
        return False
    return _stock_symbolic_eq(a, b)


def _speed_up_math_verify() -> None:
    """In a grader worker: math-verify keeps the 20 latest LaTeX parses (`parse_latex_cached`); a grader
    sees the same few answers ("\\frac{1}{2}", "5") over and over, and a parse costs 1-10 ms, so give it a
    large cache. Parse plain numbers directly and the rest SLL-first (`sll_first_latex2sympy`), and answer
    math-verify's symbolic check at once where evaluation tells the sides apart (`disproving_symbolic_eq`).
    The results are math-verify's and latex2sympy2's own."""
    import math_verify.grader as mvg
    import math_verify.parser as mvp

    cached = getattr(mvp, "parse_latex_cached", None)
    if cached is not None and hasattr(cached, "__wrapped__") and cached.cache_info().maxsize < 65536:
        mvp.parse_latex_cached = lru_cache(maxsize=65536)(cached.__wrapped__)
    if _SllLatex2Sympy is not None and getattr(mvp, "latex2sympy", None) is _stock_latex2sympy:
        mvp.latex2sympy = sll_first_latex2sympy
    if getattr(mvg, "sympy_symbolic_eq", None) is _stock_symbolic_eq:
        mvg.sympy_symbolic_eq = disproving_symbolic_eq


def _init_worker(progress=None) -> None:
    global _PROGRESS
    if progress is not None:
        _PROGRESS = progress
    _speed_up_math_verify()
    warm_latex_parser()  # a no-op in a worker forked from the forkserver, which `evals.grading._warm_grader` warmed
    # The first parse builds math-verify's LaTeX grammar (~0.1 s): pay it at worker start, not per pair.
    judge("\\boxed{1}", "1")


def _mp_context():
    """forkserver (spawn where missing): forking a parent that runs torch threads / CUDA is unsafe.

    The forkserver preloads this module and warms the LaTeX parser (`evals.grading._warm_grader`), so a worker
    (including each replacement for one killed by a timeout) starts with math-verify imported and warm
    instead of paying ~0.5 s of imports and slow first parses. The preload list is process-wide and only
    read when the forkserver first starts; "__main__" is the stdlib default.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__, "evals.grading._warm_grader"])
    return ctx


def _pair_key(response: str, gold: str) -> bytes:
    return hashlib.blake2b(f"{gold}\x00{response}".encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Verifier:
    """A pool of warm grader processes with a per-answer time limit. Thread-safe; use as a context manager.

    lenient: use the flagged "answer phrase, else last number" fallback where Math-Verify finds no answer
        (for small models that never box; off by default, so scores do not depend on it).
    plain: grade with plain Math-Verify (`judge_plain`) instead of our verifier, for audits.
    chunk_size: answers per pool task (None: enough chunks to keep every worker busy, at most 64).
    cache_size: graded (response, gold) pairs remembered; identical pairs are graded once.

    Every pair comes back as a Verdict: TIMEOUT past `timeout_s` (the worker is killed and replaced),
    UNPARSED (logged, counted in `errors`) if the grader fails. `stats` counts outcomes of every verdict
    returned (cached ones included); `cache_hits` counts verdicts served from the cache.

    Like any spawn/forkserver child, each worker re-imports the parent's ``__main__`` script, so entry
    scripts should import heavy modules (torch) inside functions, or every worker start pays for them.
    """

    MAX_CHUNK = 64
    SLOTS = 4096  # chunks in flight that the watchdog can follow; more run with their backstop timeout only
    WATCH_INTERVAL_S = 0.02

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, lenient: bool = False,
                 plain: bool = False, chunk_size: int | None = None, cache_size: int = 100_000):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if plain and lenient:
            raise ValueError("plain Math-Verify has no lenient mode: pass plain=True or lenient=True, not both")
        self.workers = workers or min(2, os.cpu_count() or 1)
        self.timeout_s = float(timeout_s)
        self.lenient = lenient
        self.plain = plain
        self.chunk_size = chunk_size
        self.cache_size = cache_size
        self.stats: Counter[Outcome] = Counter()
        self.errors = 0  # grader failures (exceptions, dead workers), each also an UNPARSED verdict
        self.cache_hits = 0
        self._cache: OrderedDict[bytes, Verdict] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        ctx = _mp_context()
        self._progress = ctx.Array("d", self.SLOTS * _SLOT_WIDTH, lock=False)
        self._free_slots = list(range(self.SLOTS))
        self._ctx = ctx
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPool:
        pool = ProcessPool(max_workers=self.workers, initializer=_init_worker, initargs=(self._progress,),
                           context=self._ctx)
        # pebble starts lazily; a first task starts the workers (and their warm-up) now, in the background.
        self._warm_up = pool.schedule(_init_worker)
        return pool

    def wait_warm(self) -> None:
        """Block until the graders have started and warmed up (from construction on, in the background).
        A caller that times other work on the same cores (generation) waits first, so the warm-up runs beside
        its start-up instead of taking cores from what it times."""
        try:
            self._warm_up.result()
        except Exception:  # noqa: BLE001 - a broken pool is replaced and reported by the next verify_batch
            pass

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

    def verify_batch(self, pairs: Sequence[tuple[str, str]],
                     progress: Callable[[int], None] | None = None) -> list[Verdict]:
        """Verdicts for (response, gold) pairs, in order. Raises ValueError at once for a bad gold.

        progress(n) is called in this thread as answers finish (n newly finished, cached ones first). Pass a
        whole file in one call rather than in batches: every batch ends with a wait for its slowest answer
        (a hung one waits out its timeout) while the other workers idle; within one call they never do.
        """
        pairs = [(response, normalize_gold(gold)) for response, gold in pairs]
        keys = [_pair_key(response, gold) for response, gold in pairs]
        verdicts: list[Verdict | None] = [None] * len(pairs)
        todo: dict[bytes, int] = {}  # first index of each distinct pair not in the cache
        with self._lock:
            if self._closed:
                raise RuntimeError("Verifier is closed")
            for i, key in enumerate(keys):
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    verdicts[i] = cached
                elif key not in todo:
                    todo[key] = i
        firsts = list(todo.values())
        on_verdict = None
        if progress is not None:
            n_cached = sum(v is not None for v in verdicts)
            if n_cached:
                progress(n_cached)
            copies = Counter(keys)  # a distinct pair graded finishes all its copies in this batch
            on_verdict = lambda j: progress(copies[keys[firsts[j]]])  # noqa: E731
        graded = self._grade([pairs[i] for i in firsts], retry_broken=True, on_verdict=on_verdict)
        # Pairs lost to a broken pool (None) are graded once more on a fresh one, not scored as failures.
        lost = [j for j, g in enumerate(graded) if g is None]
        if lost:
            regraded = self._grade([pairs[firsts[j]] for j in lost], retry_broken=False,
                                   on_verdict=None if on_verdict is None else (lambda k: on_verdict(lost[k])))
            for j, g in zip(lost, regraded):
                graded[j] = g
        by_key = {key: v for key, (v, _) in zip(todo, graded)}
        for i, key in enumerate(keys):
            if verdicts[i] is None:
                verdicts[i] = by_key[key]
        with self._lock:
            for key, (v, ok) in zip(todo, graded):
                # Timeouts and failures are not remembered: under load a timeout may not repeat.
                if ok and v.outcome is not Outcome.TIMEOUT:
                    self._cache[key] = v
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            self.cache_hits += len(pairs) - len(todo)
            self.stats.update(v.outcome for v in verdicts)
        return verdicts

    def verify(self, response: str, gold: str) -> Verdict:
        return self.verify_batch([(response, gold)])[0]

    def _chunks(self, n: int) -> list[range]:
        size = self.chunk_size or max(1, min(self.MAX_CHUNK, math.ceil(n / (4 * self.workers))))
        return [range(i, min(i + size, n)) for i in range(0, n, size)]

    def _grade(self, pairs: list[tuple[str, str]], retry_broken: bool,
               on_verdict: Callable[[int], None] | None = None) -> list[tuple[Verdict, bool] | None]:
        """(verdict, graded normally) per pair; None for a pair lost to a broken pool (if retry_broken).
        on_verdict(i), if given, is called as pair i gets its verdict.

        Chunks go to the pool at once; workers pull them as they free up. A watchdog polls the workers'
        progress: when the answer a worker is on has run past timeout_s, the chunk is cancelled (pebble kills
        that worker), that answer is a TIMEOUT, and the rest of the chunk goes back to the pool as a new
        chunk. Each chunk also has a backstop timeout (all its answers' limits together) in case the
        watchdog cannot see it; a chunk that hits it is regraded one answer per task.
        """
        if not pairs:
            return []
        pool = self._live_pool()
        out: list[tuple[Verdict, bool] | None] = [None] * len(pairs)
        pending: dict = {}  # future -> (indices into pairs, progress slot or -1)

        def finish(i: int, result: tuple[Verdict, bool] | None) -> None:
            out[i] = result
            if result is not None and on_verdict is not None:
                on_verdict(i)

        def submit(indices: list[int]) -> None:
            slot = self._take_slot()
            if slot >= 0:
                self._progress[slot * _SLOT_WIDTH] = 0.0  # not started
            future = pool.schedule(_grade_chunk, args=([pairs[i] for i in indices], self.lenient, self.plain,
                                                       self.timeout_s, slot),
                                   timeout=self.timeout_s * (len(indices) + 1))
            pending[future] = (indices, slot)

        # Samples of one problem share a gold: chunked together, a worker parses that gold (and their
        # repeated answers) once.
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][1])
        for chunk in self._chunks(len(pairs)):
            submit([order[i] for i in chunk])
        try:
            while pending:
                finished, _ = wait(list(pending), timeout=self.WATCH_INTERVAL_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    indices, slot = pending.pop(future)
                    self._give_slot(slot)
                    self._collect(future, indices, pairs, finish, submit, retry_broken)
                now = time.monotonic()
                for future, (indices, slot) in list(pending.items()):
                    hung = self._hung_answer(slot, now)
                    if hung is not None and future.cancel():  # kills the worker, if it is still running
                        del pending[future]
                        self._give_slot(slot)
                        response = pairs[indices[hung]][0]
                        log.warning("grading timed out after %.1f s; response (end): %.200r", self.timeout_s,
                                    response[-200:])
                        finish(indices[hung], (_failed(response, Outcome.TIMEOUT, self.timeout_s), False))
                        rest = indices[:hung] + indices[hung + 1 :]
                        if rest:
                            submit(rest)
        finally:
            for future, (_, slot) in pending.items():  # only on an exception: leave nothing running
                future.cancel()
                self._give_slot(slot)
        return out

    def _hung_answer(self, slot: int, now: float) -> int | None:
        """Index (in its chunk) of the answer a chunk's worker has been on for more than timeout_s, if any."""
        if slot < 0:
            return None
        base = slot * _SLOT_WIDTH
        if self._progress[base] != 1.0:
            return None
        index, started = int(self._progress[base + 1]), self._progress[base + 2]
        return index if now - started > self.timeout_s else None

    def _take_slot(self) -> int:
        with self._lock:
            return self._free_slots.pop() if self._free_slots else -1

    def _give_slot(self, slot: int) -> None:
        if slot >= 0:
            with self._lock:
                self._free_slots.append(slot)

    def _collect(self, future, indices: list[int], pairs, finish, submit, retry_broken: bool) -> None:
        if len(indices) == 1:  # its own per-answer limit already: a timeout is the answer's
            finish(indices[0], self._single_result(future, pairs[indices[0]][0], retry_broken))
            return
        try:
            items = future.result()
        except BrokenProcessPool:
            if retry_broken:
                return  # left None: graded again on a fresh pool
            raise  # a fresh pool broke at once: the grader cannot run here at all
        except Exception:  # backstop timeout or its worker died: grade its answers again, one per task
            log.info("a grading chunk overran or lost its worker; regrading its %d answers one by one", len(indices))
            for i in indices:
                submit([i])
            return
        for i, item in zip(indices, items):
            finish(i, self._from_item(item, pairs[i][0]))

    def _from_item(self, item: Verdict | str, response: str) -> tuple[Verdict, bool]:
        if isinstance(item, Verdict):
            return item, True
        log.error("grader failed; scored UNPARSED. Response (start): %.200r\n%s", response, item)
        with self._lock:
            self.errors += 1
        return _failed(response, Outcome.UNPARSED, 0.0), False

    def _single_result(self, future, response: str, retry_broken: bool) -> tuple[Verdict, bool] | None:
        try:
            return self._from_item(future.result()[0], response)
        except FutureTimeoutError:
            log.warning("grading timed out after %.1f s; response (end): %.200r", self.timeout_s, response[-200:])
            return _failed(response, Outcome.TIMEOUT, self.timeout_s), False
        except BrokenProcessPool:
            if retry_broken:
                return None
            raise
        except Exception:  # its worker died (pebble.ProcessExpired), e.g. the OOM killer
            log.exception("grader failed; scored UNPARSED. Response (start): %.200r", response)
            with self._lock:
                self.errors += 1
            return _failed(response, Outcome.UNPARSED, 0.0), False

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


def _failed(response: str, outcome: Outcome, seconds: float) -> Verdict:
    """The verdict of an answer whose grading did not finish: its last box, if any, as the extracted text."""
    boxed = last_boxed(response)
    return Verdict(outcome, boxed, "boxed" if boxed else "none", None, seconds)
