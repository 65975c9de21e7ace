"""Answer extraction for the verifier: Math-Verify's own, our documented rules on top, and the opt-in
lenient fallback; plus gold answers brought to one canonical form.

The default path (``evals/grading/verifier.py``) is Math-Verify's extraction, the one the paper and lighteval use:
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

from evals.grading.latex import last_boxed

# name -> why the rule exists. Text rules rewrite the response before Math-Verify reads it; comparison rules
# decide a verdict Math-Verify gets wrong. The verifier reports which of them touched each answer.
RULES = {
    "redundant-braces": "a brace group holding nothing but another group ('{{x}}') is one group ('{x}'). "
                        "Math-Verify's LaTeX parser takes time exponential in such nesting: 12 levels cost 2.9 s, "
                        "30 over a minute (a grading timeout), and at 100 it gives up (no answer).",
    "currency": "'\\$18.90' in prose: Math-Verify finds no answer at all after an escaped dollar sign; the "
                "sign is dropped before a number.",
    "digit-groups": "'1\\,000', '1\\ 000' (and '1 000 000' inside a box, or as the whole response) are one "
                    "number; Math-Verify reads the LaTeX spaces as products (1*0*0), and a bare '1 000' read whole "
                    "(bare-answer) would be one too. The groups are joined.",
    "bare-answer": "a response that is nothing but a formula ('x^2 + 1', '[0,1)', '\\sqrt{2}/2', or one "
                   "environment such as '\\begin{bmatrix}...\\end{bmatrix}') is read whole, as if boxed; "
                   "Math-Verify's unanchored extraction takes '1' from 'x^2 + 1', nothing from '[0,1)' and the "
                   "last entry from an undelimited matrix.",
    "bare-equation": "a response that is nothing but 'y = x^2+2x+1' (one '=', the left side a single letter, "
                     "maybe subscripted or applied: 'a_n', 'f(x)') is read whole, as if boxed; Math-Verify "
                     "finds no answer in it, or only its last number. Boxed, Math-Verify compares its right "
                     "side with a gold that is an expression, and the whole equation with a gold that is an "
                     "equation. Not when the left side's letter occurs on the right ('x = x/2 + 3' is an "
                     "equation still to solve, see unsolved-equation), nor for 'x + y = 5'.",
    "last-box": "'I got \\boxed{3}. Checking again, it is \\boxed{5}.': Math-Verify joins every box into one "
                "answer {3, 5}. Boxes count together only when nothing but separators (',', 'and', 'x =', LaTeX "
                "spacing, line breaks and math delimiters) stands between them ('\\boxed{1}, \\boxed{2}'); "
                "earlier boxes cut off by prose are unboxed.",
    "set-relation": "an inequality answer against an interval gold ('k \\geq 3' vs '[3, \\infty)') is "
                    "compared as a set (Math-Verify's allow_set_relation_comp).",
    "decimal-comma": "'3,5' for the gold 3.5: a decimal comma, when the gold has decimals and the comma cannot "
                     "be a thousands separator (not exactly three digits after it, or a lone '0' or four or more "
                     "digits before it); boxed, Math-Verify reads {3, 5}. The other way round, a gold '1,22' (as "
                     "Math-Verify reads a bare gold: 1.22) is answered by 1.22: an answer written with a decimal "
                     "point and that value. The gold stays a list as well ('11,13' in OlympiadBench is two "
                     "numbers), so only a decimal-point answer can take the decimal reading ('122' never "
                     "matches '1,22'), and only with two or more digits after the comma: the golds '1,2', "
                     "'5,1' and '-3,0' are lists of roots there, never 1.2, 5.1 or -3.",
    "unsolved-equation": "an answer 'x = x/2 + 3' whose left side is a single letter that occurs again on its "
                         "right side is an equation still to solve, not a value for x: WRONG against a gold that "
                         "is not itself an equation, where Math-Verify compares the right side alone and calls it "
                         "equal to the gold 'x/2 + 3'. 'y = x + 1' for the gold 'x + 1' (another letter) and "
                         "'f(x) = x^2' (an applied function) keep Math-Verify's verdict.",
    "list-order": "a gold written as a list ('4, 10, -2', or several boxes) is answered by the same items in the "
                  "same order: Math-Verify compares lists as sets, so '10, 4, -2' was correct. Order is free only "
                  "where the gold is written as a set ('\\{1, 2\\}'). Tuples ('(1, 2)') and intervals keep "
                  "Math-Verify's ordered reading. MATH's 'enter all solutions, separated by commas' golds are "
                  "lists too: an answer needs their order (MATH's own grader compares the strings, in order).",
    "unevaluated-arithmetic": "against a numeric gold, an answer that is arithmetic on numbers ('94 + 84' "
                              "for 178) restates the question instead of answering it: WRONG, not CORRECT "
                              "as Math-Verify has it. A reward must not pay for restating the question.",
}

# name -> why: gold forms `normalize_gold` rewrites so that the gold is parsed as its data set means it. They
# apply to every grader that reads golds through `normalize_gold` (ours and the `judge_plain` audit reference
# alike), so they never show as a disagreement between the two; ``tests/test_verifier_differential.py`` checks
# each against plain Math-Verify reading the raw gold.
GOLD_FORMS = {
    "gold-boxes": "a gold with several boxes ('\\boxed{1} and \\boxed{2}') is the list of their contents "
                  "('1, 2'), as Math-Verify joins the boxes it extracts; taking the last box alone would make "
                  "every correct answer wrong. Only the final group counts (boxes with nothing but separators "
                  "between them, the last-box rule's grouping).",
    "gold-space-groups": "a gold that is one number written with space-separated thousands ('1 000', "
                         "'12 500.5') is that number; boxed, Math-Verify reads the spaces as products (1*0*0).",
    "gold-stray-backslash": "a gold ending in a backslash ('5\\', a cut-off escape or a line break '\\\\' "
                            "left by a table) loses it; boxed, the backslash escapes the box's closing brace "
                            "and nothing parses.",
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
_SPACE_NUMBER_RE = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_GROUP_SEP_RE = re.compile(rf"{_LATEX_GROUP_SEP}| ")


def rule_digit_groups(text: str) -> str:
    text = _LATEX_GROUPS_RE.sub(lambda m: _GROUP_SEP_RE.sub("", m.group(0)), text)
    boxed = last_boxed(text)
    if boxed is None and (is_bare_answer(text) or is_bare_equation(text)):
        boxed = text.strip()  # read whole, as if boxed (bare-answer, bare-equation)
    if boxed and _SPACE_GROUPS_RE.search(boxed):
        # Plain spaces only inside the final box or a bare answer: in prose "in 3 100 ways" is not a number.
        joined = _SPACE_GROUPS_RE.sub(lambda m: m.group(0).replace(" ", ""), boxed)
        head, sep, tail = text.rpartition(boxed)
        text = head + joined + tail
    return text


_BOX_START_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What may stand between boxes that together form one answer: "\boxed{1}, \boxed{2} and $y = \boxed{3}$",
# "\boxed{-2} \quad \text{and} \quad \boxed{1}", "\boxed{1} \\ \boxed{2}" (an align's line break), "$ or \(".
_BOX_GAP_RE = re.compile(r"(?:\s|,|;|&|~|\$|\\[()\[\]]|\\\\|\\q?quad|\\[,;:! ]|\\text\{\s*(?:and|or)\s*\}"
                         r"|\band\b|\bor\b|[A-Za-z](?:_\{?\w+\}?)?\s*=)*")


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


def _final_group(text: str, spans: list[tuple[int, int, int]]) -> int:
    """Index of the first box of the final group: the last box and the boxes joined to it by separators only."""
    first = len(spans) - 1
    while first > 0 and _BOX_GAP_RE.fullmatch(text[spans[first - 1][2] : spans[first][0]]):
        first -= 1
    return first


def final_boxes(text: str) -> list[str]:
    """Contents of the final group of boxes (`_final_group`), in order; [] when there is no complete box."""
    spans = _box_spans(text)
    if not spans:
        return []
    return [text[content : end - 1].strip() for _, content, end in spans[_final_group(text, spans) :]]


def rule_last_box(text: str) -> str:
    if text.count("box") < 2:
        return text
    spans = _box_spans(text)
    if len(spans) < 2:
        return text
    first = _final_group(text, spans)
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
# One matrix environment, maybe in \left[ ... \right] and over several lines; an array's column spec ("{cc}").
_MATRIX_ENV_RE = re.compile(r"(?:\\left\s*[(\[|.]\s*)?\\begin\{([pbBvV]?matrix|smallmatrix|array)\}(?:\{[^{}]*\})?"
                            r"(.*?)\\end\{\1\}(?:\s*\\right\s*[)\]|.])?", re.DOTALL)


def is_bare_answer(text: str) -> bool:
    """True for a response that is only a formula: one short line, no math delimiters, no equals sign and no
    word of two or more letters outside LaTeX commands and \\text{} (so "So 3 + 4" is prose); or one matrix
    environment (up to 600 characters, lines allowed) whose entries are formulas of that kind."""
    s = text.strip()
    env = _MATRIX_ENV_RE.fullmatch(s)
    if env is not None:
        body = env.group(2)
        return len(s) <= 600 and not any(d in body for d in _DELIMITERS if d != "\n") and not _WORD_RE.search(
            _TEXT_ARG_RE.sub("", body))
    if not s or len(s) > 120 or any(d in s for d in _DELIMITERS):
        return False
    return not _WORD_RE.search(_TEXT_ARG_RE.sub("", s))


def rule_bare_answer(text: str) -> str:
    # A trailing backslash ("5\\", as a gold may end: gold-stray-backslash) would escape the box's closing brace.
    return f"\\boxed{{{_drop_trailing_backslashes(text)}}}" if is_bare_answer(text) else text


# "y = ...", "a_n = ...", "a_{10} = ...", "f(x) = ...", "y' = ...": one letter, maybe subscripted, primed or
# applied, then one "=" (not "==", "=>").
_EQUATION_LHS_RE = re.compile(r"([A-Za-z])(?:_\{?\w+\}?)?'?(?:\([^()=]*\))?\s*=(?![=>])(.*)", re.DOTALL)
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")


def is_bare_equation(text: str) -> bool:
    """True for a response that is only "y = <bare formula>" (`is_bare_answer`) whose left side is one letter
    that does not occur on the right ("x = x/2 + 3" is an equation still to solve)."""
    s = text.strip()
    m = _EQUATION_LHS_RE.fullmatch(s)
    if m is None or len(s) > 120:
        return False
    letter, rhs = m.groups()
    if not rhs.strip() or not is_bare_answer(rhs):
        return False
    return letter not in _COMMAND_RE.sub(" ", _TEXT_ARG_RE.sub("", rhs))


def rule_bare_equation(text: str) -> str:
    return f"\\boxed{{{_drop_trailing_backslashes(text)}}}" if is_bare_equation(text) else text


TEXT_RULES = (("redundant-braces", rule_redundant_braces), ("currency", rule_currency),
              ("digit-groups", rule_digit_groups), ("last-box", rule_last_box), ("bare-answer", rule_bare_answer),
              ("bare-equation", rule_bare_equation))


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

# Thousands groups start with 1-9: "0,111" is not 111 but a decimal comma, as Math-Verify reads it (boxed too).
_PLAIN_NUMBER_RE = re.compile(r"-?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?")
_DECIMAL_NUMBER_RE = re.compile(r"-?\d+\.\d+")
# A comma that cannot separate thousands: not exactly three digits after it, or a lone 0 or 4+ digits before it.
_DECIMAL_COMMA_RE = re.compile(r"-?(?:(?:0|\d{4,}),\d+|\d+,(?!\d{3}$)\d+)")
# The same in a gold, with at least two digits after the comma: "1,2", "5,1", "0,5" and "-3,0" are lists of
# roots in the benchmarks (OlympiadBench) far more often than decimals.
_GOLD_DECIMAL_COMMA_RE = re.compile(r"-?(?:(?:0|\d{4,}),\d{2,}|\d+,(?!\d{3}$)\d{2,})")
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
    """True if one side is the other's value written with a decimal comma: the answer "3,5" for the gold
    "3.5", or the answer "1.22" (a decimal point required) for the gold "1,22" (two or more digits after the
    comma: a gold "1,2" is read as a list only)."""
    s = answer.strip().strip("$").strip()
    if _DECIMAL_NUMBER_RE.fullmatch(gold) and _DECIMAL_COMMA_RE.fullmatch(s):
        return Decimal(s.replace(",", ".")) == Decimal(gold)
    if _GOLD_DECIMAL_COMMA_RE.fullmatch(gold) and _DECIMAL_NUMBER_RE.fullmatch(s):
        return Decimal(s) == Decimal(gold.replace(",", "."))
    return False


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
    ("$\\frac{1}{2}$" -> "\\frac{1}{2}"). A gold that is itself a box is unboxed, several boxes become the list
    of their contents ("\\boxed{1} and \\boxed{2}" -> "1, 2"); LaTeX digit groups ("1\\,000") and a number's
    space-separated thousands ("1 000") are joined; a trailing backslash is dropped ("5\\" -> "5"). `GOLD_FORMS`
    names each of these and says why. Idempotent.

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

    s = _drop_trailing_backslashes(gold)
    if "box" in s:
        boxes = final_boxes(s)
        if len(boxes) > 1:  # gold-boxes
            s = ", ".join(boxes)
        else:
            s = last_boxed(s) or s
    # Peel math delimiters, possibly nested ("$\(x\)$" is rare but harmless to handle).
    peeled = True
    while peeled:
        peeled = False
        s = _drop_trailing_backslashes(s)
        for left, right in _MATH_WRAPPERS:
            inner = s[len(left) : -len(right)]
            # "$x$ and $y$" starts and ends with "$" but is not one wrapped formula.
            wrapped = len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right)
            if wrapped and left not in inner and right not in inner:
                s = inner.strip()
                peeled = True
                break
    s = _LATEX_GROUPS_RE.sub(lambda m: _GROUP_SEP_RE.sub("", m.group(0)), s)
    if _SPACE_NUMBER_RE.fullmatch(s):  # gold-space-groups
        s = s.replace(" ", "")
    # Only a gold that is one plain number is rewritten; "(1,234)" could be a point, not 1234.
    if _PLAIN_NUMBER_RE.fullmatch(s):
        s = _canonical_number(_strip_thousands(s))
    if not s:
        raise ValueError(f"gold answer is empty: {gold!r}")
    return s


def _drop_trailing_backslashes(s: str) -> str:
    """ "5\\" -> "5", "x+1 \\\\" -> "x+1" (gold-stray-backslash); surrounding whitespace stripped."""
    s = s.strip()
    while s.endswith("\\"):
        s = s[:-1].rstrip()
    return s


def _canonical_number(s: str) -> str:
    """ "025" -> "25", "27.0" -> "27", "2.50" -> "2.5", "-0" -> "0"; exact (no float round-trip)."""
    sign = "-" if s.startswith("-") else ""
    whole, _, frac = s.lstrip("-").partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    body = f"{whole}.{frac}" if frac else whole
    return "0" if body == "0" else sign + body
