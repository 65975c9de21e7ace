"""Differential tests: our verifier against plain Math-Verify on real model outputs and adversarial ones.

`fixtures/smollm2_outputs.jsonl` holds real SmolLM2-135M-Instruct responses from this suite's own
evaluations (``tbrm eval --model smollm2-135m-instruct --max-new-tokens 256``: greedy on the first 40 MATH500
and GSM8K problems and 20 of Minerva and OlympiadBench, 2 samples at T=1.0 on AIME24/25, and the 200 held-out
1-2 digit additions with 48 new tokens; every disagreement plus a slice of the rest is kept). It holds no benchmark
data: the golds of real benchmark problems are read from the benchmark files by problem id
(`tests/fixture_outputs.py`), so without them only the held-out additions are compared.
`fixtures/adversarial_outputs.jsonl` holds hand-written responses in the forms graders trip over.

Every case where the two disagree on correctness must be listed in `fixtures/verifier_disagreements.json`
with the rule that decides it and the reason: an intended improvement. A new disagreement (a regression,
or a change in math-verify) fails the test, and so does a listed one that no longer happens.

`PARITY` holds the answer forms where our verifier lost to plain Math-Verify or both missed (several boxes,
decimal commas, spaced thousands, a stray backslash in the gold, equations against expressions, bmatrix vs
pmatrix) and their near misses, each with the rule that decides it and checked against Math-Verify called
exactly as its README does (the raw gold, not boxed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.grading.extraction import RULES
from evals.grading.verifier import Outcome, judge, judge_plain

C, W = Outcome.CORRECT, Outcome.WRONG
# at a grading worker's recursion limit, whatever other tests of this process raised it to (conftest)
pytestmark = pytest.mark.usefixtures("grading_worker_recursion_limit")

FIXTURES = Path(__file__).parent / "fixtures"


def _rows(name: str) -> list[dict]:
    """A fixture's rows, each with its gold (see the module docstring for the SmolLM2 outputs')."""
    if name == "smollm2_outputs.jsonl":
        from tests.conftest import find_real_data_dir
        from tests.fixture_outputs import smollm2_outputs

        return smollm2_outputs(find_real_data_dir())
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def _disagreements(rows: list[dict]) -> dict[str, tuple]:
    out = {}
    for r in rows:
        ours, plain = judge(r["response"], r["gold"]), judge_plain(r["response"], r["gold"])
        if ours.correct != plain.correct:
            out[r["id"]] = (ours, plain)
    return out


@pytest.fixture(scope="module")
def expected() -> dict[str, dict]:
    return json.loads((FIXTURES / "verifier_disagreements.json").read_text())


@pytest.mark.parametrize("fixture", ["smollm2_outputs.jsonl", "adversarial_outputs.jsonl"])
def test_every_disagreement_with_plain_math_verify_is_an_intended_improvement(fixture, expected):
    rows = _rows(fixture)
    assert len({r["id"] for r in rows}) == len(rows)
    found = _disagreements(rows)
    listed = {k: v for k, v in expected.items() if k in {r["id"] for r in rows}}
    assert set(found) == set(listed), {"new": sorted(set(found) - set(listed)), "gone": sorted(set(listed) - set(found))}
    for case_id, (ours, plain) in found.items():
        entry = listed[case_id]
        assert entry["ours"] == ours.outcome.value and entry["plain"] == plain.outcome.value, case_id
        assert entry["rule"] in RULES or entry["rule"] == "boxed-first", case_id
        if entry["rule"] in RULES:
            assert entry["rule"] in ours.rules, case_id  # decided by the rule it is listed under
        assert len(entry["reason"]) > 20


def _library_math_verify(response: str, gold: str) -> bool:
    """Math-Verify exactly as its README calls it: ``verify(parse(gold), parse(answer))``, library defaults, the
    raw gold (not normalized, not boxed). The reference the parity forms below are measured against."""
    from math_verify import parse, verify

    return verify(parse(gold, parsing_timeout=None), parse(response, parsing_timeout=None), timeout_seconds=None)


_P = "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}"
_B = "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}"

# Answer forms where our verifier lost to plain Math-Verify, or where both missed (issue 21), and their near
# misses: (response, gold, our outcome, the rule that decides it, plain Math-Verify's verdict on the raw gold).
# The rule is a `RULES` name (it must be among the verdict's rules), "no " and a `RULES` name (the rule must stay
# out: a near miss it declines), a `GOLD_FORMS` name (`normalize_gold` must rewrite the gold), or "math-verify"
# (Math-Verify's reading of the gold as this suite reads it, `judge_plain`, untouched by any of our rules).
PARITY = [
    # several boxes in the gold against one box or a set, and the reverse: as Math-Verify
    ("$\\boxed{1,2}$", "$\\boxed{1}\\boxed{2}$", C, "gold-boxes", True),  # Math-Verify's own test case
    ("\\boxed{1, 2}", "\\boxed{1} and \\boxed{2}", C, "gold-boxes", True),
    ("\\boxed{\\{1, 2\\}}", "\\boxed{1} and \\boxed{2}", C, "gold-boxes", True),
    ("\\boxed{x = 1} or \\boxed{x = 2}", "\\boxed{1} and \\boxed{2}", C, "gold-boxes", True),
    ("\\boxed{1}", "\\boxed{1} and \\boxed{2}", W, "gold-boxes", False),  # one of two is not the answer
    ("\\boxed{2}", "\\boxed{1} and \\boxed{2}", W, "gold-boxes", False),  # nor is the last box alone
    ("$\\boxed{1}\\boxed{2}$", "$\\boxed{1,2}$", C, "math-verify", True),
    ("\\boxed{1} and \\boxed{2}", "$\\{1, 2\\}$", C, "math-verify", True),
    ("so \\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", "$-2,1$", C, "math-verify", True),
    # ... and in another order than the gold's list: ours, a wrong answer (issue 28; Math-Verify compares as sets)
    ("so \\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", "$1,-2$", W, "list-order", True),
    ("\\boxed{2, 1}", "\\boxed{1} and \\boxed{2}", W, "list-order", True),
    ("\\boxed{3, 5}", "$\\boxed{3}$ and $\\boxed{5}$", C, "gold-boxes", True),  # issue 28: one box holding the list
    ("\\boxed{1} \\\\ \\boxed{2}", "$\\{1, 2\\}$", C, "no last-box", True),  # an align's line break
    ("I got \\boxed{1}. Checking again, it is \\boxed{2}.", "$\\{1, 2\\}$", W, "last-box", True),  # ours: a retraction
    ("\\boxed{12}", "$1, 2$", W, "math-verify", False),  # a list 1, 2 is not 12
    # a list or tuple in another order (issue 28): a wrong answer; sets only where the gold is one
    ("\\boxed{10, 4, -2}", "4, 10, -2", W, "list-order", False),  # Math-Verify, gold boxed as we read it: correct
    ("10, 4, -2", "4, 10, -2", W, "list-order", True),
    ("\\boxed{4, 10, -2}", "4, 10, -2", C, "math-verify", False),  # Math-Verify reads the raw gold as -2
    ("\\boxed{(10, 4, -2)}", "(4, 10, -2)", W, "math-verify", False),  # a tuple: ordered already
    ("\\boxed{(2, 1]}", "[1, 2)", W, "math-verify", False),
    ("\\boxed{10, 4, -2}", "\\{4, 10, -2\\}", C, "math-verify", False),  # a set: any order (Math-Verify: raw gold unread)
    # a time: a colon form parses to 1/00 = zoo, an undefined value that equals nothing (issue 28); only the very text
    ("\\boxed{1:00}", "12:00", W, "math-verify", False),
    ("1:00", "12:00", W, "bare-answer", False),
    ("The meeting starts at 3:00", "12:00", W, "math-verify", False),
    ("\\boxed{12:00}", "12:00", C, "math-verify", False),  # Math-Verify extracts nothing from the raw gold
    ("\\boxed{\\frac{1}{0}}", "\\frac{2}{0}", W, "math-verify", False),
    # math delimiters that span lines (issue 28): as Math-Verify
    ("$\n 9 \n$", "9", C, "math-verify", True),
    ("So the answer is $\n9\n$.", "9", C, "math-verify", True),
    ("$$\n \\frac{1}{2} \n$$", "0.5", C, "math-verify", True),
    # a decimal comma and space-separated thousands, where unambiguous: as Math-Verify
    ("1.22", "1,22", C, "decimal-comma", True),  # Math-Verify's own test case
    ("\\boxed{1.22}", "1,22", C, "decimal-comma", True),
    ("\\boxed{0.111}", "0,111", C, "math-verify", True),  # Math-Verify's own; the gold is not 111 (normalize_gold)
    ("1000,99", "1000.99", C, "decimal-comma", True),  # Math-Verify's own test case
    ("\\boxed{0,111}", "0.111", C, "math-verify", True),
    ("\\boxed{122}", "1,22", W, "no decimal-comma", False),
    ("\\boxed{1, 22}", "1,22", C, "math-verify", False),  # the gold as a list still counts
    ("\\boxed{1.2}", "1,2", W, "no decimal-comma", True),  # "1,2": a list of roots in OlympiadBench, not 1.2
    ("\\boxed{-3}", "-3,0", W, "no decimal-comma", True),
    ("\\boxed{1,222}", "1.222", W, "no decimal-comma", False),  # a thousands group: 1222
    ("1 000", "1000", C, "digit-groups", True),  # Math-Verify's own test case
    ("\\boxed{1000}", "1 000", C, "gold-space-groups", True),
    ("\\boxed{12500.5}", "12 500.5", C, "gold-space-groups", True),
    ("\\boxed{1}", "1 000", W, "gold-space-groups", False),
    # a gold that ends in a stray backslash: as Math-Verify
    ("\\boxed{5}", "5\\", C, "gold-stray-backslash", True),
    ("\\boxed{x+1}", "x+1 \\\\", C, "gold-stray-backslash", False),  # a line break: Math-Verify reads no gold
    ("\\boxed{6}", "5\\", W, "gold-stray-backslash", False),
    ("5\\", "5\\", C, "bare-answer", True),  # both end in one (issue 28): the box's brace is not escaped
    ("12\\", "12 \\", C, "bare-answer", True),
    ("6\\", "5\\", W, "bare-answer", False),
    # an equation against a bare expression: both missed, now equal where the left side is one letter
    ("y = x^2+2x+1", "x^2+2x+1", C, "bare-equation", False),
    ("y = x + 1", "x+1", C, "bare-equation", False),
    ("f(x) = 3x - 1", "3x-1", C, "bare-equation", False),
    ("\\boxed{y = x^2+2x+1}", "$x^2+2x+1$", C, "math-verify", True),
    ("\\boxed{y = x^2+2x+1}", "$(x+1)^2$", C, "math-verify", True),
    ("y = x^2+2x+2", "x^2+2x+1", W, "bare-equation", False),
    ("x = \\frac{x}{2} + 3", "\\frac{x}{2}+3", W, "no bare-equation", False),  # an equation still to solve
    ("\\boxed{x = \\frac{x}{2} + 3}", "$\\frac{x}{2}+3$", W, "unsolved-equation", True),
    ("\\boxed{x = 2x + 3}", "$y = 2x+3$", W, "math-verify", False),  # gold an equation: compared whole
    ("\\boxed{m + n = 23}", "23", C, "math-verify", True),  # "find m + n": the last side counts
    # the same matrix with bmatrix and with pmatrix: both missed unboxed, now equal
    (_B, "$" + _P + "$", C, "bare-answer", False),  # Math-Verify reads the last entry, 4
    (_P.replace(" 1 &", "\n1 &").replace("\\end", "\n\\end"), "$" + _B + "$", C, "bare-answer", False),
    ("\\boxed{" + _B + "}", _P, C, "math-verify", False),  # Math-Verify misses only the raw, undelimited gold
    ("$" + _B + "$", "$" + _P + "$", C, "math-verify", True),
    (_B.replace("4", "5"), _P, W, "bare-answer", False),
    ("\\boxed{" + _B.replace("bmatrix", "vmatrix") + "}", _P, W, "math-verify", False),  # a determinant, -2
]


@pytest.mark.parametrize("response, gold, ours, rule, plain", PARITY)
def test_parity_forms(response, gold, ours, rule, plain):
    from evals.grading.extraction import GOLD_FORMS, normalize_gold

    v = judge(response, gold)
    assert v.outcome is ours
    assert _library_math_verify(response, gold) is plain
    if rule.startswith("no "):
        assert rule[3:] in RULES and rule[3:] not in v.rules
    elif rule in RULES:
        assert rule in v.rules
    elif rule in GOLD_FORMS:
        assert normalize_gold(gold) != gold.strip()
    else:
        assert rule == "math-verify" and not v.rules and judge_plain(response, gold).outcome is ours


def test_real_outputs_cover_every_benchmark():
    from tests.fixture_outputs import FIXTURE

    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert all("gold" in r for r in rows if r["benchmark"] == "arith-heldout")  # generated here, not benchmark data
    assert not any("gold" in r for r in rows if r["benchmark"] != "arith-heldout")  # read from the benchmark files
    benchmarks = {r["benchmark"] for r in rows}
    assert {"arith-heldout", "math500", "gsm8k", "minerva", "olympiadbench", "aime24", "aime25"} <= benchmarks



def _benchmark_rows(limit: int = 150) -> list[dict]:
    """MATH500 worked solutions against their own gold and against another problem's (numbers and
    expressions, right and wrong), when the benchmark data is here; none otherwise."""
    from tests.conftest import find_real_data_dir

    root = find_real_data_dir()
    path = root / "math500" / "test.jsonl" if root else None
    if path is None or not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:limit]
    rows = []
    for i, r in enumerate(records):
        rows.append({"id": f"math500/{i}", "response": r["solution"], "gold": r["answer"]})
        rows.append({"id": f"math500/{i}/other", "response": r["solution"], "gold": records[i - 1]["answer"]})
    return rows


@pytest.mark.parametrize("plain", [False, True], ids=["ours", "plain"])
def test_pool_speed_ups_change_no_verdict(plain):
    # Pool workers grade with the speed-ups (large parse cache, SLL-first parse, plain-number short cut,
    # numbers told apart without simplify()); this process grades with math-verify as it ships. Every
    # verdict must be the same in all but its time (an answer that times out in the pool is left out).
    import math_verify.grader
    import math_verify.parser
    from latex2sympy2_extended.latex2sympy2 import latex2sympy

    from evals.grading.verifier import Outcome, Verifier, _stock_symbolic_eq, judge, judge_plain

    assert math_verify.parser.latex2sympy is latex2sympy  # this process: math-verify as it ships
    assert math_verify.grader.sympy_symbolic_eq is _stock_symbolic_eq
    rows = _rows("smollm2_outputs.jsonl") + _rows("adversarial_outputs.jsonl") + _benchmark_rows()
    # Equal numbers written another way: only simplify() says equal (the short cuts must leave them alone).
    rewritten = [("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}"), ("\\frac{1}{\\sqrt{2}-1}", "1+\\sqrt{2}"), ("2^{-1}", "0.5"),
                 ("\\sqrt{12}", "2\\sqrt{3}"), ("-\\frac{6}{4}", "-1.5"), ("\\frac{\\pi}{2}", "\\frac{1}{2}\\pi"),
                 ("(\\sqrt{3}+1)^2", "4+2\\sqrt{3}"), ("\\dfrac{3}{4}", "0.75"), ("-007", "-7"),
                 ("\\frac{10}{4}", "\\frac{5}{2}")]
    rows += [{"id": f"rewritten/{i}", "response": f"So the answer is $\\boxed{{{pred}}}$.", "gold": gold}
             for i, (pred, gold) in enumerate(rewritten)]
    with Verifier(workers=2, timeout_s=5.0, plain=plain) as v:
        pooled = v.verify_batch([(r["response"], r["gold"]) for r in rows])
    compared = 0
    for r, p in zip(rows, pooled):
        if p.outcome is Outcome.TIMEOUT:
            continue
        here = judge_plain(r["response"], r["gold"]) if plain else judge(r["response"], r["gold"])
        assert (p.outcome, p.extracted, p.extraction, p.answer_key, p.rules) == (
            here.outcome, here.extracted, here.extraction, here.answer_key, here.rules), r["id"]
        compared += 1
    assert compared >= len(rows) - 5
