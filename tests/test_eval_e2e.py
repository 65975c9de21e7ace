"""End-to-end `tbrm eval` / `tbrm grade`: real model classes, real verifier processes.

Evaluations and gradings run in-process through `tbrm.api.evaluate` / `tbrm.api.grade` (what the commands call), so
the test process pays the imports once; a real `tbrm` process runs where the process is what is tested: the run a
SIGKILL interrupts, the exit code and one-line message of a refused start, the command's own output (the summary
table, --no-progress), and one plain run of each command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tbrm import api
from tests.conftest import eval_flags, kill_env, run_cli

pytestmark = pytest.mark.usefixtures("no_leaked_workers")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_tiny_model_writes_samples_and_summary(tiny_model_path, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("eval", "--model", tiny_model_path, "--benchmarks", "math500", "amc23", "--limit", "3",
                   "--samples", "2", "--temperature", "1.0", "--max-new-tokens", "12", "--batch-size", "4",
                   "--out", str(out), "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["benchmarks"]) == {"math500", "amc23"}
    for name in ("math500", "amc23"):
        b = summary["benchmarks"][name]
        rows = _rows(out / "samples" / f"{name}.jsonl")
        assert len(rows) == 3 * 2 == b["n_problems"] * b["n_samples"]
        assert sum(b["outcomes"].values()) == len(rows)  # every sample counted: never a silent zero
        assert {r["outcome"] for r in rows} <= {"correct", "wrong", "unparsed", "timeout"}
        assert all(0 < r["num_tokens"] <= 12 and r["finish_reason"] in ("stop", "length") for r in rows)
        assert 0.0 <= b["avg@2"]["ci_low"] <= b["avg@2"]["value"] <= b["avg@2"]["ci_high"] <= 1.0
        assert b["pass@2"]["value"] >= b["pass@1"]["value"]
        assert b["sampling"]["n"] == 2 and b["sampling"]["max_new_tokens"] == 12
        assert b["throughput"]["tokens_per_second"] > 0
    assert summary["template"]["name"] == "qwen-math" and summary["template"]["chat_template_used"]
    assert {"torch", "transformers", "math-verify"} <= set(summary["versions"])
    assert summary["fingerprint"]["sha256_sample"]
    assert "math500" in proc.stdout and "avg@2" in proc.stdout  # the summary table


def test_killed_eval_resumes_without_regenerating(tiny_model_path, tmp_path, capsys):
    settings = dict(model=tiny_model_path, benchmarks=["amc23"], limit=5, samples=2, temperature=1.0,
                    max_new_tokens=10, batch_size=3)
    args = ["eval", *eval_flags(settings), "--no-progress"]
    killed = tmp_path / "killed"
    proc = run_cli(*args, "--out", str(killed), env=kill_env(batches=2), check=False)
    assert proc.returncode == -9  # really killed (SIGKILL), not a clean exit
    partial = _rows(killed / "samples" / "amc23.jsonl")
    assert len(partial) == 6 and not (killed / "summary.json").exists()

    capsys.readouterr()
    api.evaluate(out=killed, progress=False, **settings)  # what `tbrm eval ... --out KILLED` runs
    assert "resuming, 2/4 batches already on disk" in capsys.readouterr().out
    rows = _rows(killed / "samples" / "amc23.jsonl")
    assert rows[:6] == partial  # finished batches kept byte-for-byte, not regenerated
    assert len(rows) == 10 and len({(r["problem_id"], r["sample_index"]) for r in rows}) == 10

    fresh = tmp_path / "fresh"
    api.evaluate(out=fresh, progress=False, print_table=False, **settings)
    a = json.loads((killed / "summary.json").read_text())["benchmarks"]["amc23"]
    b = json.loads((fresh / "summary.json").read_text())["benchmarks"]["amc23"]
    for key in ("avg@2", "pass@1", "pass@2", "maj@2", "outcomes", "lengths"):
        assert a[key] == b[key]
    by_key = lambda rs: {(r["problem_id"], r["sample_index"]): r["response"] for r in rs}  # noqa: E731
    assert by_key(rows) == by_key(_rows(fresh / "samples" / "amc23.jsonl"))


def test_resume_with_other_settings_is_refused(tiny_model_path, tmp_path):
    api.evaluate(model=tiny_model_path, benchmarks=["math500"], limit=2, max_new_tokens=4, out=tmp_path / "r",
                 progress=False, print_table=False)
    before = (tmp_path / "r" / "samples" / "math500.jsonl").read_text()
    proc = run_cli("eval", "--model", tiny_model_path, "--benchmarks", "math500", "--limit", "2", "--max-new-tokens",
                   "4", "--no-progress", "--seed", "7", "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "seed" in proc.stderr and "another --out" in proc.stderr
    assert (tmp_path / "r" / "samples" / "math500.jsonl").read_text() == before  # the run is left as it was


def test_bad_user_file_names_file_line_and_field(tiny_model_path, tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text('{"q": "1+1?", "a": "2"}\n{"q": "2+2?"}\n')
    proc = run_cli("eval", "--model", tiny_model_path, "--data-file", str(data), "--problem-field", "q",
                   "--answer-field", "a", "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2
    assert f"{data}:2" in proc.stderr and "'a'" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_user_file(tiny_model_path, tmp_path):
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"q": f"What is {i}+1?", "gold": i + 1}) + "\n" for i in range(3)))
    api.evaluate(model=tiny_model_path, data_file=data, problem_field="q", answer_field="gold", max_new_tokens=6,
                 out=tmp_path / "r", progress=False, print_table=False, audit=True)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    bench = summary["benchmarks"]["mine"]
    assert bench["n_problems"] == 3 and bench["lenient_verdicts"] == 0
    # --audit: every answer also graded by plain Math-Verify, both scores side by side
    audit = json.loads((tmp_path / "r" / "audit.json").read_text())
    assert bench["audit"] == audit["mine"] and audit["mine"]["n_answers"] == 3
    assert audit["mine"]["ours"] == pytest.approx(bench["avg@1"]["value"])
    flips = audit["mine"]["flips"]
    n_disagreements = len(_rows(tmp_path / "r" / "audit_disagreements.jsonl"))
    assert n_disagreements == flips["plain_wrong_ours_correct"] + flips["plain_correct_ours_wrong"]


def test_grade_scores_external_generations(tmp_path):
    rows = [
        {"id": "p1", "response": "so the answer is \\boxed{25}", "gold": "025"},
        {"id": "p1", "response": "I think \\boxed{24}", "gold": "025"},
        {"id": "p2", "response": "\\boxed{\\frac{1}{2}}", "gold": "$\\frac{1}{2}$"},
        {"id": "p2", "response": "no idea", "gold": "$\\frac{1}{2}$"},
        # restates the question: plain Math-Verify pays for it, our verifier does not
        {"id": "p3", "response": "The sum of 94 and 84 is 172, which is 94 + 84", "gold": "178"},
        {"id": "p3", "response": "\\boxed{178}", "gold": "178"},
    ]
    f = tmp_path / "gens.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    returned = api.grade(f, answer_field="gold", id_field="id", audit=True, out=tmp_path / "g", progress=False,
                         print_table=False)
    graded = _rows(tmp_path / "g" / "graded.jsonl")
    assert returned == graded
    assert [g["outcome"] for g in graded] == ["correct", "wrong", "correct", "unparsed", "wrong", "correct"]
    assert graded[4]["rules"] == ["unevaluated-arithmetic"]
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["metrics"]["n_problems"] == 3 and summary["metrics"]["avg@2"]["value"] == pytest.approx(0.5)
    assert summary["metrics"]["pass@2"]["value"] == pytest.approx(1.0)
    assert summary["lenient_verdicts"] == 0 and summary["file"] == "gens.jsonl"
    audit = summary["audit"]
    assert audit["flips"] == {"plain_wrong_ours_correct": 0, "plain_correct_ours_wrong": 1}
    assert audit["plain"] == pytest.approx(2 / 3) and audit["score_change_points"] == pytest.approx(-100 / 6)
    assert audit["by_rule"] == {"unevaluated-arithmetic": 1}
    (flip,) = _rows(tmp_path / "g" / "audit_disagreements.jsonl")
    assert (flip["problem_id"], flip["outcome"], flip["plain_outcome"]) == ("p3", "wrong", "correct")


def test_grade_accepts_no_progress_as_eval_does(tmp_path, capsys):
    f = tmp_path / "gens.jsonl"
    f.write_text("".join(json.dumps({"response": f"\\boxed{{{i}}}", "answer": "1"}) + "\n" for i in range(3)))
    capsys.readouterr()
    api.grade(f, out=tmp_path / "a")  # `tbrm grade FILE` without the flag: a progress bar
    shown = capsys.readouterr()
    quiet = run_cli("grade", str(f), "--no-progress", "--out", str(tmp_path / "b"))  # the plain `tbrm grade` process
    assert "grading gens.jsonl" in shown.err and "grading" not in quiet.stderr
    assert _rows(tmp_path / "a" / "graded.jsonl") == _rows(tmp_path / "b" / "graded.jsonl")


def test_grade_missing_field_is_a_clear_error(tmp_path):
    f = tmp_path / "gens.jsonl"
    f.write_text(json.dumps({"response": "\\boxed{1}", "answer": "1"}) + "\n" + json.dumps({"answer": "2"}) + "\n")
    proc = run_cli("grade", str(f), check=False)
    assert proc.returncode == 2 and f"{f}:2" in proc.stderr and "response" in proc.stderr


@pytest.mark.slow
def test_bundled_smollm2_on_math500_and_amc23_slices(smollm2_path, tmp_path):
    out = tmp_path / "smol"
    proc = run_cli("eval", "--model", "smollm2", "--benchmarks", "math500", "amc23", "--limit", "2",
                   "--samples", "2", "--max-new-tokens", "48", "--out", str(out), "--no-progress")
    summary = json.loads((out / "summary.json").read_text())
    # the bundled model by its name (its converted copy sits in the home cache: no machine path in a summary)
    assert summary["model_path"] == "smollm2-135m-instruct" and summary["fingerprint"]["sha256_sample"]
    text = (out / "summary.json").read_text() + (out / "config.json").read_text()
    assert smollm2_path not in text and str(Path.home()) not in text
    for name, n in (("math500", 1), ("amc23", 2)):  # greedy MATH500: one sample is all --samples 2 can give
        rows = _rows(out / "samples" / f"{name}.jsonl")
        assert len(rows) == 2 * n
        # a real instruct model writes words, not token soup
        assert all(len(r["response"].split()) >= 3 for r in rows)
    assert summary["benchmarks"]["amc23"]["sampling"]["temperature"] == 1.0  # the paper default for AMC
    assert summary["benchmarks"]["math500"]["sampling"]["temperature"] == 0.0  # greedy for MATH500
    assert "amc23" in proc.stdout
