"""Grader audit: every answer graded by our verifier and by plain Math-Verify, side by side.

A reader of a score wants to know how much it depends on the grader. `audit_rows` regrades graded rows
with plain Math-Verify (`evals.grading.verifier.judge_plain`, library defaults) and reports, per benchmark, both
scores, how far the score moves, how many verdicts flip each way, and which of our rules account for
the flips (`evals.grading.extraction.RULES`; "none" means Math-Verify's configuration alone: we read boxed answers
before answer phrases, and our gold is parsed the same way in both). Used by ``tbrm grade --audit`` and
``tbrm eval --audit``.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from evals.metrics import mean_accuracy, problem_results
from evals.grading.verifier import Verifier

def audit_rows(rows: Sequence[dict], *, timeout_s: float = 5.0, workers: int | None = None,
               progress: bool = True) -> tuple[dict, list[dict]]:
    """(summary, disagreements) for rows with ``benchmark``, ``problem_id``, ``response``, ``gold``,
    ``outcome`` (our verdict) and optionally ``rules`` and ``extracted``.

    summary: per benchmark {n_answers, ours, plain (scores in [0, 1]), score_change_points (ours - plain,
    in points), flips: {plain_wrong_ours_correct, plain_correct_ours_wrong}, agreement, by_rule}, plus the
    same over all rows under "all".
    """
    from tqdm.auto import tqdm

    with Verifier(workers=workers, timeout_s=timeout_s, plain=True) as verifier, \
            tqdm(total=len(rows), desc="audit: plain Math-Verify", unit="ans", disable=not progress) as bar:
        verdicts = verifier.verify_batch([(r["response"], r["gold"]) for r in rows], progress=bar.update)
    plain = [v.outcome.value for v in verdicts]
    audited = [dict(r, plain_outcome=p) for r, p in zip(rows, plain)]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in audited:
        groups[r.get("benchmark", "all")].append(r)
    if len(groups) > 1:
        groups["all"] = [dict(r, problem_id=f"{r.get('benchmark')}/{r['problem_id']}") for r in audited]
    summary = {name: _compare(rs) for name, rs in groups.items()}
    disagreements = [
        {k: r.get(k) for k in ("benchmark", "problem_id", "sample_index", "gold", "extracted", "outcome",
                                "plain_outcome", "rules", "response")}
        for r in audited if (r["outcome"] == "correct") != (r["plain_outcome"] == "correct")
    ]
    return summary, disagreements


def _compare(rows: Sequence[dict]) -> dict:
    ours, plain = (mean_accuracy(problem_results(rows, outcome)) for outcome in ("outcome", "plain_outcome"))
    up = [r for r in rows if r["outcome"] == "correct" and r["plain_outcome"] != "correct"]
    down = [r for r in rows if r["outcome"] != "correct" and r["plain_outcome"] == "correct"]
    by_rule = Counter(",".join(r.get("rules") or ()) or "none" for r in up + down)
    return {"n_answers": len(rows), "ours": ours, "plain": plain, "score_change_points": 100 * (ours - plain),
            "flips": {"plain_wrong_ours_correct": len(up), "plain_correct_ours_wrong": len(down)},
            "agreement": 1 - (len(up) + len(down)) / len(rows), "by_rule": dict(by_rule.most_common())}


def write_audit(out_dir: str | Path, summary: dict, disagreements: list[dict]) -> None:
    from evals.io import atomic_write_json, atomic_write_jsonl

    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "audit.json", summary)
    atomic_write_jsonl(out_dir / "audit_disagreements.jsonl", disagreements)


def print_audit(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="grader audit: our verifier vs plain Math-Verify")
    for col in ("benchmark", "answers", "ours", "plain MV", "change (pts)", "plain wrong→ours correct",
                "plain correct→ours wrong", "agreement", "flips by rule"):
        table.add_column(col, justify="left" if col in ("benchmark", "flips by rule") else "right")
    for name, s in summary.items():
        rules = ", ".join(f"{k} {v}" for k, v in s["by_rule"].items()) or "-"
        table.add_row(name, str(s["n_answers"]), f"{100 * s['ours']:.1f}", f"{100 * s['plain']:.1f}",
                      f"{s['score_change_points']:+.1f}", str(s["flips"]["plain_wrong_ours_correct"]),
                      str(s["flips"]["plain_correct_ours_wrong"]), f"{100 * s['agreement']:.1f}%", rules)
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)
