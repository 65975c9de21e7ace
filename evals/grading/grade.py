"""`tbrm grade FILE`: score generations made elsewhere (vLLM, another harness) with the shared verifier.

Rows sharing a problem id are samples of one problem (avg@k / pass@k / maj@k over them); without an id field
each row is its own problem. Writes `graded.jsonl` (one row per input row: its line, problem id, extracted
answer, outcome, the rules that decided it) and `summary.json` (metrics) into the output folder; with
``audit=True`` also `audit.json` and `audit_disagreements.jsonl` (`evals.grading.audit`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from evals.benchmarks import DataError, field_value, read_records
from evals.metrics import outcome_counts, problem_results, summarize
from evals.grading.verifier import Verifier
from evals.io import atomic_write_json, atomic_write_jsonl

def grade_file(path: str | Path, *, response_field: str = "response", answer_field: str = "answer",
               id_field: str | None = None, out_dir: str | Path, lenient: bool = False,
               audit: bool = False, timeout_s: float = 5.0, workers: int | None = None, progress: bool = True,
               print_table: bool = True) -> dict:
    from tqdm.auto import tqdm

    path = Path(path)
    items = []  # (line, problem_id, response, gold)
    for line, record in read_records(path):
        response = field_value(record, response_field, path=path, line=line, kind="response")
        gold = field_value(record, answer_field, path=path, line=line, kind="answer")
        pid = str(field_value(record, id_field, path=path, line=line, kind="id")) if id_field else f"row-{line}"
        items.append((line, pid, response, gold))
    if not items:
        raise DataError(path, None, None, "no rows to grade")
    # The whole file in one call: batches would each end waiting on their slowest answer with workers idle.
    with Verifier(workers=workers, timeout_s=timeout_s, lenient=lenient) as verifier, \
            tqdm(total=len(items), desc=f"grading {path.name}", unit="ans", disable=not progress) as bar:
        verdicts = verifier.verify_batch([(r, g) for _, _, r, g in items], progress=bar.update)
    sample_counter: dict[str, int] = defaultdict(int)
    rows = []
    for (line, pid, _, gold), v in zip(items, verdicts):
        rows.append({"line": line, "problem_id": pid, "sample_index": sample_counter[pid], "gold": gold,
                     "extracted": v.extracted, "extraction": v.extraction, "outcome": v.outcome.value,
                     "answer_key": v.answer_key, "rules": list(v.rules)})
        sample_counter[pid] += 1
    metrics = summarize(problem_results(rows))
    outcomes = outcome_counts(rows)
    summary = {"file": path.name, "response_field": response_field, "answer_field": answer_field,
               "id_field": id_field, "lenient": lenient, "n_rows": len(rows), "outcomes": outcomes,
               "lenient_verdicts": sum(r["extraction"] == "lenient" for r in rows), "metrics": metrics}
    out_dir = Path(out_dir)
    if audit:
        from evals.grading.audit import audit_rows, print_audit, write_audit

        audit_summary, disagreements = audit_rows(
            [dict(r, benchmark=path.stem, response=resp) for r, (_, _, resp, _) in zip(rows, items)],
            timeout_s=timeout_s, workers=workers, progress=progress)
        write_audit(out_dir, audit_summary, disagreements)
        summary["audit"] = audit_summary[path.stem]
        if print_table:
            print_audit(audit_summary)
    atomic_write_jsonl(out_dir / "graded.jsonl", rows)
    atomic_write_json(out_dir / "summary.json", summary)
    if print_table:
        from rich.console import Console

        n = metrics["n_samples"]
        m = metrics[f"avg@{n}"]
        Console().print(f"[bold]{path.name}[/bold]: {metrics['n_problems']} problems x {n} samples, "
                        f"avg@{n} = {100 * m['value']:.1f} (95% CI {100 * m['ci_low']:.1f}-{100 * m['ci_high']:.1f}); "
                        f"outcomes {outcomes}; written to {out_dir}")
    return summary
