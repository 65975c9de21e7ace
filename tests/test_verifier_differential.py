"""Differential tests: our verifier against plain Math-Verify on real model outputs and adversarial ones.

`fixtures/smollm2_outputs.jsonl` holds real SmolLM2-135M-Instruct responses from this suite's own
evaluations (``tbrm eval --model smollm2-135m-instruct --max-new-tokens 256``: greedy on the first 40 MATH500
and GSM8K problems and 20 of Minerva and OlympiadBench, 2 samples at T=1.0 on AIME24/25, and the 200 held-out
1-2 digit additions with 48 new tokens; every disagreement plus a slice of the rest is kept; gold answers as the
benchmarks give them, problems left out). `fixtures/adversarial_outputs.jsonl` holds hand-written
responses in the forms graders trip over.

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
    benchmarks = {r["benchmark"] for r in _rows("smollm2_outputs.jsonl")}
    assert {"arith-heldout", "math500", "gsm8k", "minerva", "olympiadbench", "aime24", "aime25"} <= benchmarks

