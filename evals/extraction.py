"""Answer extraction for the verifier: Math-Verify's own, our documented rules on top, and the opt-in
lenient fallback; plus gold answers brought to one canonical form.

The default path (``evals/verifier.py``) is Math-Verify's extraction, the one the paper and lighteval use:
its LaTeX and plain-expression extractors with ``\\boxed{}`` answers first, over the whole response.
Before that, `apply_text_rules` rewrites a few forms Math-Verify misreads; after it, the verifier applies
the comparison rules. Every rule is named in `RULES` (with the reason it exists), reported in the
`Verdict.rules` of each answer it touched, and tested on its own in ``tests/test_verifier_rules.py``.

`lenient_answer` is the opt-in "answer phrase, else last number" extraction, for small models that never
box (SmolLM2-135M writes "2 + 3 = 5"). It is used only when asked for (``--lenient`` / the recipe field
``lenient``) and only when the default path finds no answer at all; every verdict it produces is flagged
(extraction ``"lenient"``) and counted in summaries, so benchmark scores under the default settings never
depend on it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from evals.latex import last_boxed

# name -> why the rule exists. Text rules rewrite the response before Math-Verify reads it; comparison rules
# decide a verdict Math-Verify gets wrong. The verifier reports which of them touched each answer.
RULES = {
    "redundant-braces": "a brace group holding nothing but another group ('{{x}}') is one group ('{x}'). "
                        "Math-Verify's LaTeX parser takes time exponential in such nesting: 12 levels cost 2.9 s, "
                        "30 over a minute (a grading timeout), and at 100 it gives up (no answer).",
    "currency": "'\\$18.90' in prose: Math-Verify finds no answer at all after an escaped dollar sign; the "
                "sign is dropped before a number.",
    "digit-groups": "'1\\,000', '1\\ 000' (and '1 000 000' inside a box) are one number; Math-Verify reads "
                    "the LaTeX spaces as products (1*0*0). The groups are joined.",
    "bare-answer": "a response that is nothing but a formula ('x^2 + 1', '[0,1)', '\\sqrt{2}/2') is read "
                   "whole, as if boxed; Math-Verify's unanchored extraction takes '1' from 'x^2 + 1' and "
                   "nothing from '[0,1)'.",
    "last-box": "'I got \\boxed{3}. Checking again, it is \\boxed{5}.': Math-Verify joins every box into one "
                "answer {3, 5}. Boxes count together only when nothing but separators (',', 'and', 'x =') stands "
                "between them ('\\boxed{1}, \\boxed{2}'); earlier boxes cut off by prose are unboxed.",
    "set-relation": "an inequality answer against an interval gold ('k \\geq 3' vs '[3, \\infty)') is "
                    "compared as a set (Math-Verify's allow_set_relation_comp).",
    "decimal-comma": "'3,5' for the gold 3.5: a decimal comma, when the gold has decimals and the comma is "
                     "not followed by a thousands group of exactly three digits (Math-Verify reads {3, 5}).",
    "unevaluated-arithmetic": "against a numeric gold, an answer that is arithmetic on numbers ('94 + 84' "
                              "for 178) restates the question instead of answering it: WRONG, not CORRECT "
                              "as Math-Verify has it. A reward must not pay for restating the question.",
}


# ------------------------------------------------------------------------------------------------------------
# Text rules: rewrite the response before Math-Verify reads it. Each returns the new text, unchanged if the
# rule does not apply.

_ESCAPED_DOLLAR_RE = re.compile(r"\\\$\s*(?=[-+]?\.?\d)")


def _escaped(text: str, i: int) -> bool:
    """Whether text[i] is escaped (an odd number of backslashes before it): '\\{' is a literal brace."""
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def rule_redundant_braces(text: str) -> str:
    if "{{" not in text:
        return text
    closes: dict[int, int] = {}  # index of each group's "{" -> index of its "}"
    stack: list[int] = []
    for i, ch in enumerate(text):
        if ch in "{}" and not _escaped(text, i):
            if ch == "{":
                stack.append(i)
            elif stack:
                closes[stack.pop()] = i
    # an outer group whose content is exactly one inner group: drop the outer pair (one pass, any depth)
    drop = {k for i, j in closes.items() if closes.get(i + 1) == j - 1 for k in (i, j)}
    return "".join(ch for i, ch in enumerate(text) if i not in drop) if drop else text


def rule_currency(text: str) -> str:
    return _ESCAPED_DOLLAR_RE.sub("", text)


# A thousands group separator in LaTeX: thin/normal/medium spaces, a tie, or "{,}" (Math-Verify reads "{,}"
# already; it is kept so mixed forms like "1{,}000\,000" join too).
_LATEX_GROUP_SEP = r"(?:\\,|\\ |\\;|\\:|~|\{,\})"
_LATEX_GROUPS_RE = re.compile(rf"(?<![\d.])\d{{1,3}}(?:{_LATEX_GROUP_SEP}\d{{3}})+(?![\d])")
_SPACE_GROUPS_RE = re.compile(r"(?<![\d.])\d{1,3}(?: \d{3})+(?![\d])")
_GROUP_SEP_RE = re.compile(rf"{_LATEX_GROUP_SEP}| ")


def rule_digit_groups(text: str) -> str:
    text = _LATEX_GROUPS_RE.sub(lambda m: _GROUP_SEP_RE.sub("", m.group(0)), text)
    boxed = last_boxed(text)
    if boxed and _SPACE_GROUPS_RE.search(boxed):
        # Plain spaces only inside the final box: in prose "in 3 100 ways" is not a number.
        joined = _SPACE_GROUPS_RE.sub(lambda m: m.group(0).replace(" ", ""), boxed)
        head, sep, tail = text.rpartition(boxed)
        text = head + joined + tail
    return text


_BOX_START_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What may stand between boxes that together form one answer: "\boxed{1}, \boxed{2} and $y = \boxed{3}$".
_BOX_GAP_RE = re.compile(r"(?:\s|,|;|\$|\\[()]|\\quad|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b"
                         r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*")


def _box_spans(text: str) -> list[tuple[int, int, int]]:
    """(start of "\\boxed", start of content, end after "}") of every complete box, in order."""
    spans = []
    for m in _BOX_START_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            spans.append((m.start(), m.end(), i))
    return [sp for k, sp in enumerate(spans) if k == 0 or sp[0] >= spans[k - 1][2]]  # outermost only


def rule_last_box(text: str) -> str:
    if text.count("box") < 2:
        return text
    spans = _box_spans(text)
    if len(spans) < 2:
        return text
    first = len(spans) - 1  # the final group: the last box and the boxes joined to it by separators only
    while first > 0 and _BOX_GAP_RE.fullmatch(text[spans[first - 1][2] : spans[first][0]]):
        first -= 1
    if first == 0:
        return text
    out, pos = [], 0
    for start, content, end in spans[:first]:  # unbox: keep the content, drop "\boxed{" and "}"
        out += [text[pos:start], text[content : end - 1]]
        pos = end
    return "".join(out) + text[pos:]


_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word of prose, not "\frac" nor "x" nor "\text{cm}"
# An equation ("x = 5", "2 + 3 = 5") is left to Math-Verify, which reads its last side.
_DELIMITERS = ("\\boxed", "\\fbox", "$", "\\(", "\\[", "\n", "=")
_TEXT_ARG_RE = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\}")


def is_bare_answer(text: str) -> bool:
    """True for a response that is only a formula: one short line, no math delimiters, no equals sign and no
    word of two or more letters outside LaTeX commands and \\text{} (so "So 3 + 4" is prose)."""
    s = text.strip()
    if not s or len(s) > 120 or any(d in s for d in _DELIMITERS):
        return False
    return not _WORD_RE.search(_TEXT_ARG_RE.sub("", s))


def rule_bare_answer(text: str) -> str:
    return f"\\boxed{{{text.strip()}}}" if is_bare_answer(text) else text


TEXT_RULES = (("redundant-braces", rule_redundant_braces), ("currency", rule_currency),
              ("digit-groups", rule_digit_groups), ("last-box", rule_last_box), ("bare-answer", rule_bare_answer))


def apply_text_rules(text: str) -> tuple[str, tuple[str, ...]]:
    """The response as Math-Verify should read it, and the names of the rules that changed it."""
    fired = []
    for name, rule in TEXT_RULES:
        new = rule(text)
        if new != text:
            fired.append(name)
            text = new
    return text, tuple(fired)


# ------------------------------------------------------------------------------------------------------------
# Comparison-side helpers (used by the verifier on Math-Verify's extracted answer string)

_PLAIN_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_DECIMAL_NUMBER_RE = re.compile(r"-?\d+\.\d+")
_DECIMAL_COMMA_RE = re.compile(r"-?\d+,(?!\d{3}$)\d+")
# Arithmetic on numbers, after LaTeX operators are spelled as "*" and "÷". "/" and "^" are not operators here:
# "3/4" is an exact answer for 0.75 and "10^6" a way to write a million; "a*10^k" is scientific notation.
_NUM = r"\d+(?:\.\d+)?"
_LATEX_OPERATORS = {"\\times": "*", "\\cdot": "*", "×": "*", "·": "*", "\\div": "÷"}
_ARITHMETIC_RE = re.compile(rf"{_NUM}\)?[-+*÷]\(?-?{_NUM}")
_SCIENTIFIC_RE = re.compile(rf"-?{_NUM}\*10\^-?\d+")


def is_number(gold: str) -> bool:
    """A normalized gold that is a single plain number ("178", "-2.5")."""
    return bool(re.fullmatch(r"-?\d+(?:\.\d+)?", gold))


def is_unevaluated_arithmetic(answer: str) -> bool:
    """ "94 + 84", "12 \\times 3", "7 - 2 = 5 - 0": arithmetic on numbers left for the reader to do.

    Only the last side of an equation counts ("94 + 84 = 178" is evaluated); a lone signed number, or
    anything with a variable or a function in it, is not.
    """
    last = re.split(r"(?<![<>!\\])=", answer)[-1]
    for op, plain in _LATEX_OPERATORS.items():
        last = last.replace(op, plain)
    last = re.sub(r"\\left|\\right|[\s{}]", "", last).rstrip(".")
    if re.search(r"[A-Za-z\\]", last) or _SCIENTIFIC_RE.fullmatch(last):
        return False
    return bool(_ARITHMETIC_RE.search(last))


def decimal_comma_value(answer: str, gold: str) -> bool:
    """True if `answer` is `gold` written with a decimal comma ("3,5" for "3.5")."""
    s = answer.strip().strip("$").strip()
    if not (_DECIMAL_NUMBER_RE.fullmatch(gold) and _DECIMAL_COMMA_RE.fullmatch(s)):
        return False
    return Decimal(s.replace(",", ".")) == Decimal(gold)


# ------------------------------------------------------------------------------------------------------------
# The opt-in lenient fallback

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


def lenient_answer(response: str) -> str | None:
    """The last "the (final) answer is X" whose X is inline math or a number, else the last number.

    Only for the opt-in lenient mode: the last number of a text is often not its answer.
    """
    return _answer_phrase(response) or _last_number(response)


def _answer_phrase(text: str) -> str | None:
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


# ------------------------------------------------------------------------------------------------------------
# Gold answers

_MATH_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def normalize_gold(gold: object) -> str:
    """A gold answer as a canonical string that math-verify parses to the intended value.

    Benchmarks ship odd forms: AIME24 zero-pads ("025" -> "25"), AMC23 stores JSON floats (27.0 -> "27"),
    GSM8K writes thousands commas ("2,125" -> "2125"), OlympiadBench wraps in dollars
    ("$\\frac{1}{2}$" -> "\\frac{1}{2}"). A gold that is itself a box is unboxed; LaTeX digit groups
    ("1\\,000") are joined. Idempotent.

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
    s = _LATEX_GROUPS_RE.sub(lambda m: _GROUP_SEP_RE.sub("", m.group(0)), s)
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
