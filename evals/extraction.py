"""Pull the final answer out of a model response, and bring gold answers to one canonical form.

The verifier (``evals/verifier.py``) grades what this module extracts, for training rewards and for
evaluation scores alike, so the rules here are deliberately few and predictable:

1. the content of the last ``\\boxed{}`` / ``\\fbox{}`` (method ``"boxed"``);
2. only if allowed, for models that never box (SmolLM2-135M writes "2 + 3 = 5."): the last
   "the (final) answer is X" phrase, else the last number in the text (method ``"fallback"``);
3. otherwise nothing (method ``"none"``).

Fallback answers are always flagged so that reports can show how much of a score they carry.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from evals.latex import last_boxed


@dataclass(frozen=True)
class Extraction:
    """The answer found in a response (None when there is none) and how it was found.

    method: ``"boxed"``, ``"fallback"`` or ``"none"``.
    """

    answer: str | None
    method: str


# A number as models write them in prose: optional sign, thousands groups ("2,125") or plain digits,
# optional decimals, optional "/denominator". The sign only counts when it cannot be a binary minus
# ("5-3" ends with the number 3, not -3). A decimal point needs a digit after it, so the full stop in
# "= 5." is not taken.
_NUMBER = r"""
    (?:(?<![\w)\]}])-)?                 # sign, unless it follows an operand
    (?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)    # 2,125 | 2125
    (?:\.\d+)?                          # decimals
    (?:/\d+(?:\.\d+)?)?                 # fraction: 3/4
"""
_NUMBER_RE = re.compile(_NUMBER, re.VERBOSE)
# Digits glued after a letter are a name, not a number ("x2", "a_1"); units after one are fine ("10cm").
_LAST_NUMBER_RE = re.compile(rf"(?<![A-Za-z_]){_NUMBER}", re.VERBOSE)

# "The final answer is $\frac12$", "Answer: 42", "the answer is **7**". What follows the phrase must be
# inline math or a number; anything else ("the answer is not obvious...") is ignored.
_PHRASE_RE = re.compile(r"\banswer\s*(?:is|:|=)[:*\s]*", re.IGNORECASE)
_INLINE_MATH_RE = re.compile(r"\$\$?([^$]+?)\$\$?|\\\((.+?)\\\)")


def extract_answer(response: str, allow_fallback: bool = True) -> Extraction:
    """The final answer of `response`: its last box, else (if `allow_fallback`) a phrase or last number."""
    boxed = last_boxed(response)
    if boxed:  # an empty box answers nothing; it falls through like no box
        return Extraction(boxed, "boxed")
    if allow_fallback:
        found = _answer_phrase(response) or _last_number(response)
        if found:
            return Extraction(found, "fallback")
    return Extraction(None, "none")


def _answer_phrase(text: str) -> str | None:
    """X of the last "the (final) answer is X" whose X is inline math or a number."""
    for m in reversed(list(_PHRASE_RE.finditer(text))):
        rest = text[m.end() :]
        math_m = _INLINE_MATH_RE.match(rest)
        if math_m:
            inner = (math_m.group(1) or math_m.group(2)).strip()
            if inner:
                return inner
            continue
        num_m = _NUMBER_RE.match(rest)
        if num_m:
            return _strip_thousands(num_m.group(0))
    return None


def _last_number(text: str) -> str | None:
    found = None
    for found in _LAST_NUMBER_RE.finditer(text):
        pass
    return _strip_thousands(found.group(0)) if found else None


def _strip_thousands(number: str) -> str:
    """ "2,125" -> "2125". Only called on strings that are one number (lists like "1,2" never get here)."""
    return number.replace(",", "")


_MATH_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def normalize_gold(gold: object) -> str:
    """A gold answer as a canonical string that math-verify parses to the intended value.

    Benchmarks ship odd forms: AIME24 zero-pads ("025" -> "25"), AMC23 stores JSON floats (27.0 -> "27"),
    GSM8K writes thousands commas ("2,125" -> "2125"), OlympiadBench wraps in dollars
    ("$\\frac{1}{2}$" -> "\\frac{1}{2}"). A gold that is itself a box is unboxed. Idempotent.

    Raises ValueError for None, booleans, NaN/infinite floats and empty strings: a gold that cannot be
    graded is a data bug that must surface, not a silent zero reward.
    """
    if gold is None or isinstance(gold, bool):
        raise ValueError(f"gold answer must be a str, int or float, got {gold!r}")
    if isinstance(gold, int):
        return str(gold)
    if isinstance(gold, float):
        if not math.isfinite(gold):
            raise ValueError(f"gold answer is not a finite number: {gold!r}")
        # Positional notation: repr(1e-07) is "1e-07", which LaTeX parsing would read as 1*e*(-07).
        return _canonical_number(format(Decimal(repr(gold)), "f"))
    if not isinstance(gold, str):
        raise ValueError(f"gold answer must be a str, int or float, got {type(gold).__name__}: {gold!r}")

    s = gold.strip()
    boxed = last_boxed(s) if "box" in s else None
    if boxed:
        s = boxed
    # Peel math delimiters, possibly nested ("$\(x\)$" is rare but harmless to handle).
    peeled = True
    while peeled:
        peeled = False
        for left, right in _MATH_WRAPPERS:
            inner = s[len(left) : -len(right)]
            # "$x$ and $y$" starts and ends with "$" but is not one wrapped formula.
            wrapped = len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right)
            if wrapped and left not in inner and right not in inner:
                s = inner.strip()
                peeled = True
                break
    # Only a gold that is one plain number is rewritten; "(1,234)" could be a point, not 1234.
    if _PLAIN_NUMBER_RE.fullmatch(s):
        s = _canonical_number(_strip_thousands(s))
    if not s:
        raise ValueError(f"gold answer is empty: {gold!r}")
    return s


def _canonical_number(s: str) -> str:
    """ "025" -> "25", "27.0" -> "27", "2.50" -> "2.5", "-0" -> "0"; exact (no float round-trip)."""
    sign = "-" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    body = f"{whole}.{frac}" if frac else whole
    return "0" if body == "0" else sign + body
