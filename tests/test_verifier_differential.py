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
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.extraction import RULES
from evals.verifier import judge, judge_plain

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

    from evals.verifier import Outcome, Verifier, _stock_symbolic_eq, judge, judge_plain

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
