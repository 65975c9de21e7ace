"""`tbrm report` end to end on REAL run directories made by the real trainer and evaluator on the tiny model:
Table 1, paired significance wiring, mismatch flags, training curves / efficiency, clear errors for bad run files,
and the HTML rendered in headless Chromium."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.stats import describe, mcnemar
from tests.conftest import run_cli, run_cli_here

FAST = ["steps=2", "prompts_per_step=4", "max_new_tokens=6", "eval_problems=4", "eval_every=1", "save_every=2",
        "micro_batch_size=4", "arith_digits=[1,2]", "heldout_size=20", "generation_batch_size=8", "tensorboard=false"]
MATH = dict(benchmarks=["math500"], max_new_tokens=4, batch_size=8)
AMC = dict(benchmarks=["amc23"], limit=3, samples=4, temperature=1.0, max_new_tokens=4, batch_size=12)


@pytest.fixture(scope="module")
def runs(tiny_model_path, tmp_path_factory) -> dict[str, Path]:
    """Two 2-step train runs (TBRM n=1, GRPO n=2) with held-out evals, and eval runs of the base model and both
    final checkpoints on a 3-problem MATH500 slice (greedy, 1 sample) and a 3-problem AMC23 slice (4 samples),
    plus the GRPO checkpoint on a 2-problem MATH500 slice (a different problem set: the mismatch).

    They are made in-process through `tbrm.api`, which is what the `tbrm train` and `tbrm eval` handlers call (the
    CLI path itself is tested in test_train_e2e and test_eval_e2e); the report under test runs as a real process."""
    from tbrm import api

    d = tmp_path_factory.mktemp("report-runs")
    r = {k: d / k for k in ("train-tbrm", "train-grpo", "base-math", "base-amc", "tbrm-math", "tbrm-amc",
                            "grpo-math", "grpo-amc", "grpo-math-l2")}
    api.train(out=r["train-tbrm"], overrides=[f"model={tiny_model_path}", "algorithm=tbrm", *FAST], progress=False)
    api.train(out=r["train-grpo"], overrides=[f"model={tiny_model_path}", "algorithm=grpo", "rollouts_per_prompt=2",
                                               *FAST], progress=False)
    models = {"base": tiny_model_path, "tbrm": str(r["train-tbrm"] / "checkpoint-2"),
              "grpo": str(r["train-grpo"] / "checkpoint-2")}
    for key, model in models.items():
        api.evaluate(out=r[f"{key}-math"], model=model, **MATH, limit=3, progress=False, print_table=False)
        api.evaluate(out=r[f"{key}-amc"], model=model, **AMC, progress=False, print_table=False)
    api.evaluate(out=r["grpo-math-l2"], model=models["grpo"], **MATH, limit=2, progress=False, print_table=False)
    return r


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full_report(runs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("report") / "rep"
    # the base model's runs are NOT given first: Table 1 must still put the base row first
    proc = run_cli("report", str(runs["tbrm-math"]), str(runs["grpo-math"]), str(runs["base-math"]),
                   str(runs["tbrm-amc"]), str(runs["base-amc"]), str(runs["grpo-amc"]), str(runs["grpo-math-l2"]),
                   str(runs["train-tbrm"]), str(runs["train-grpo"]), "--out", str(out),
                   "--label", f"{runs['grpo-math-l2']}=GRPO two-problem slice")
    return out, proc


def test_report_writes_every_artefact(full_report):
    out, proc = full_report
    for f in ("report.md", "report.html", "figures/table1.png", "figures/curves_vs_step.png",
              "figures/curves_vs_time.png", "figures/curves_vs_rollouts.png", "figures/efficiency.png",
              "tables/table1.csv", "tables/paired.csv", "tables/efficiency.csv", "tables/training.csv",
              "tables/results_long.csv", "tables/runs.csv"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "report.md" in proc.stdout and "warning" in proc.stdout


def test_table1_rows_columns_and_merged_runs(full_report, runs, tiny_model_path):
    out, _ = full_report
    rows = _csv(out / "tables" / "table1.csv")
    # base first; a model's MATH500 and AMC23 runs merge into one row; the differently-sliced run is its own row
    base = f"{Path(tiny_model_path).name} (base)"
    assert [r["label"] for r in rows] == [base, "TBRM n=1", "GRPO n=2", "GRPO two-problem slice"]
    assert rows[0]["base"] == "True" and rows[1]["base"] == "False"
    rel = lambda run: os.path.relpath(run, out)  # noqa: E731 -- run folders are named relative to the report
    assert rows[1]["runs"] == f"{rel(runs['tbrm-math'])} {rel(runs['tbrm-amc'])}"
    by = {r["label"]: r for r in rows}
    assert by["TBRM n=1"]["math500_metric"] == "avg@1" and by["TBRM n=1"]["amc23_metric"] == "avg@4"
    summary = json.loads((runs["tbrm-amc"] / "summary.json").read_text())["benchmarks"]["amc23"]
    assert float(by["TBRM n=1"]["amc23_value"]) == pytest.approx(summary["avg@4"]["value"])
    assert float(by["TBRM n=1"]["amc23_ci_high"]) == pytest.approx(summary["avg@4"]["ci_high"])
    sliced = by["GRPO two-problem slice"]
    assert sliced["math500_n_problems"] == "2" and sliced["amc23_value"] == ""
    # math500 problem sets differ and amc23 is missing for one row: nothing may be averaged
    assert all(r["average"] == "" for r in rows)
    md = (out / "report.md").read_text()
    assert "| Model / method | math500 (avg@1) ⚠ | amc23 (avg@4) | Average |" in md  # flagged in the header
    assert "math500: different problem sets" in md
    assert "math500: problems or settings differ between rows (see Mismatches)" in md
    assert "amc23: not evaluated for GRPO two-problem slice" in md


def test_paired_table_pairs_same_problems_and_picks_the_test(full_report):
    out, _ = full_report
    pairs = _csv(out / "tables" / "paired.csv")
    got = {(p["benchmark"], p["method_a"], p["method_b"]): p for p in pairs}
    # 3 rows share each benchmark's 3-problem slice -> 3 pairs each; the 2-problem slice pairs with nobody
    assert len(pairs) == 6 and not any("two-problem" in p["method_a"] + p["method_b"] for p in pairs)
    for (bench, a, b), p in got.items():
        assert p["n_problems"] == "3"
        assert p["test"] == ("mcnemar" if bench == "math500" else "paired_bootstrap")  # 1 sample vs 4 samples
        assert "(base)" not in a  # the method is A, the base model B
        assert a in p["sentence"] and b in p["sentence"]
        assert ("is ahead of" in p["sentence"]) == (p["significant"] == "True")
        if bench == "math500":  # a MATH500 slice is never in the Holm family: exploratory, raw p, no verdict
            assert p["family"] == "exploratory" and p["p_holm"] == "" and p["verdict"] == "exploratory"
            assert p["sentence"].startswith("Exploratory:") and 0.0 < float(p["p_value"]) <= 1.0
        else:  # amc23, the main benchmark: Holm over its 3 comparisons, worded about the checkpoints
            assert p["family"] == "main benchmark"
            assert 0.0 < float(p["p_value"]) <= float(p["p_holm"]) <= 1.0
            assert "checkpoint" in p["sentence"]
    md = (out / "report.md").read_text()
    skipped = [line for line in md.splitlines() if line.startswith("- Not compared — math500:")]
    assert len(skipped) == 3 and all("GRPO two-problem slice" in line and "(2 vs 3 problems" in line
                                     or "(3 vs 2 problems" in line for line in skipped)


def test_report_leads_with_findings_and_ends_with_the_run_inventory(full_report):
    out, _ = full_report
    md = (out / "report.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    # one training seed per method: a smoke run, said first, with no method verdicts
    assert md.startswith("# Smoke run — ") and heads[0] == "## Smoke run: no method verdicts"
    assert heads[1] == "## Table 1: benchmark scores" and heads[2] == "## Which differences are real"
    assert heads[3] == "## Training curves" and heads[-1] == "## Runs"
    html = (out / "report.html").read_text()
    assert html.index('id="table1"') < html.index('id="paired"') < html.index('id="fig-curves_vs_step"') \
        < html.index('id="runs"')
    assert "Verdicts follow the Holm-adjusted p-value" in md


def _text_files(folder: Path):
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".csv", ".md", ".html", ".txt", ".yaml", ".sh"):
            yield f


def test_no_file_a_run_or_report_writes_holds_its_absolute_path_or_the_home_dir(full_report, runs):
    from evals.portable import leaks

    out, _ = full_report
    checked = 0
    for run in runs.values():
        for f in _text_files(run):
            assert not leaks(f.read_text(errors="replace"), run), f"{f} names its run folder or the home dir"
            checked += 1
    for f in _text_files(out):
        assert not leaks(f.read_text(errors="replace"), out, *runs.values()), f"{f} holds a machine path"
        checked += 1
    assert checked > 20
    runs_csv = _csv(out / "tables" / "runs.csv")
    assert all(not r["path"].startswith("/") for r in runs_csv)
    assert any(r["model_sha256"] for r in runs_csv)  # models identified by hash and name, not by where they were


def test_training_and_efficiency_tables(full_report):
    out, _ = full_report
    tr = {r["method"]: r for r in _csv(out / "tables" / "training.csv")}
    assert tr["TBRM n=1"]["rollouts"] == "8" and tr["GRPO n=2"]["rollouts"] == "16"  # 2 steps x 4 prompts x n
    assert tr["TBRM n=1"]["steps_done"] == "2" and tr["TBRM n=1"]["heldout_accuracy_start"] != ""
    eff = {r["method"]: r for r in _csv(out / "tables" / "efficiency.csv")}
    assert eff["TBRM n=1"]["step_time_vs_tbrm_n1"] == "1.0" and eff["TBRM n=1"]["first_step_excluded"] == "True"
    ratio = float(eff["GRPO n=2"]["step_s"]) / float(eff["TBRM n=1"]["step_s"])
    assert float(eff["GRPO n=2"]["step_time_vs_tbrm_n1"]) == pytest.approx(ratio)


def test_efficiency_uses_steps_after_the_first(runs, tmp_path):
    from reports.runs import load_train_run
    from reports.tables import efficiency

    rows = [json.loads(x) for x in (runs["train-tbrm"] / "metrics.jsonl").read_text().splitlines() if x.strip()]
    step2 = next(r for r in rows if r["step"] == 2)
    e = efficiency(load_train_run(runs["train-tbrm"]))
    assert e["step_s"] == pytest.approx(step2["time/step"])
    assert e["generation_s"] == pytest.approx(step2["time/generation"])
    assert e["peak_memory_gb"] == pytest.approx(max(r["memory/peak_gb"] for r in rows if "memory/peak_gb" in r))


def test_efficiency_is_robust_to_one_stalled_step(runs):
    """Per-step figures are medians: one step slowed 10x by another process must not move them."""
    from reports.runs import load_train_run
    from reports.tables import efficiency

    t = load_train_run(runs["train-tbrm"])
    secs = [50.0, 10.0, 11.0, 100.0, 12.0]  # step 1 (warm-up, excluded), then one stall among normal steps
    t.rows = [{"step": 0}] + [{"step": i, "time/step": s, "time/generation": s / 2, "rollout/tokens_per_second": 100 / s}
                              for i, s in enumerate(secs, start=1)]
    e = efficiency(t)
    assert e["step_s"] == pytest.approx(11.5) and e["generation_s"] == pytest.approx(5.75)
    assert e["rollout_tokens_per_s"] == pytest.approx((100 / 11 + 100 / 12) / 2)
    assert e["steps_averaged"] == 4 and e["first_step_excluded"]


def test_average_over_matching_benchmarks(runs, tmp_path):
    from reports.build import build_report

    res = build_report([str(runs[k]) for k in ("base-math", "tbrm-math", "grpo-math", "base-amc", "tbrm-amc",
                                               "grpo-amc")], tmp_path / "rep", metric="pass")
    assert not res.warnings
    rows = _csv(tmp_path / "rep" / "tables" / "table1.csv")
    for r in rows:
        assert r["amc23_metric"] == "pass@4"
        assert float(r["average"]) == pytest.approx((float(r["math500_value"]) + float(r["amc23_value"])) / 2)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Average = unweighted mean over math500, amc23" in md and "None: every benchmark" in md
    # --average-over restricts the Average (the paper's six-benchmark average leaves GSM8K out)
    build_report([str(runs["base-math"]), str(runs["base-amc"])], tmp_path / "rep2", average_over=["amc23"])
    r = _csv(tmp_path / "rep2" / "tables" / "table1.csv")[0]
    assert float(r["average"]) == pytest.approx(float(r["amc23_value"]))


# ---------------------------------------------------------------------------------------------------- constructed


def _rewrite(src: Path, dst: Path, outcomes: dict[str, list[bool]], reverse: bool = False) -> None:
    """Copy a real eval run and rewrite its math500 samples as `outcomes` ({problem_id: per-sample verdicts}),
    recomputing summary.json with the runner's own summarize_rows (so the pair stays consistent)."""
    from evals.runner import summarize_rows
    from evals.engines.base import SamplingParams

    shutil.copytree(src, dst)
    template = json.loads((dst / "samples" / "math500.jsonl").read_text().splitlines()[0])
    rows = []
    for pid, verdicts in outcomes.items():
        for i, ok in enumerate(verdicts):
            rows.append({**template, "problem_id": pid, "sample_index": i, "outcome": "correct" if ok else "wrong",
                         "extracted": "1" if ok else "2", "answer_key": "1" if ok else "2", "extraction": "boxed"})
    if reverse:
        rows.reverse()  # pairing must go by problem id, not by line order
    (dst / "samples" / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((dst / "summary.json").read_text())
    n = len(next(iter(outcomes.values())))
    summary["benchmarks"]["math500"] = summarize_rows(rows, SamplingParams(n=n, temperature=1.0 if n > 1 else 0.0,
                                                                           max_new_tokens=4))
    (dst / "summary.json").write_text(json.dumps(summary))


def test_constructed_pairs_give_the_expected_wording(runs, tmp_path):
    ids = [f"math500/syn-{i:02d}" for i in range(40)]
    strong = {p: [i < 30] for i, p in enumerate(ids)}  # 30/40
    weak = {p: [i % 8 == 0] for i, p in enumerate(ids)}  # 5/40 (ids 0, 8, 16, 24, 32: all also right in strong)
    near = {p: [i < 29 or i == 35] for i, p in enumerate(ids)}  # 30/40, differs from strong on 2 problems
    for name, oc, rev in (("strong", strong, False), ("weak", weak, True), ("near", near, True)):
        _rewrite(runs["base-math"], tmp_path / name, oc, reverse=rev)
    out = tmp_path / "rep"
    run_cli("report", *(str(tmp_path / n) for n in ("strong", "weak", "near")), "--out", str(out),
            *(x for n, lab in (("strong", "Strong"), ("weak", "Weak"), ("near", "Near")) for x in
              ("--label", f"{tmp_path / n}={lab}")))
    pairs = {(p["method_a"], p["method_b"]): p for p in _csv(out / "tables" / "paired.csv")}
    assert set(pairs) == {("Strong", "Weak"), ("Strong", "Near"), ("Weak", "Near")}
    sw = pairs[("Strong", "Weak")]
    expected = mcnemar([strong[p][0] for p in ids], [weak[p][0] for p in ids])
    assert sw["test"] == "mcnemar" and float(sw["p_value"]) == pytest.approx(expected.p_value)
    assert sw["sentence"] == describe(expected, "Strong", "Weak", p_adjusted=float(sw["p_holm"]), n_comparisons=3)
    assert float(sw["p_holm"]) == pytest.approx(min(1.0, 3 * expected.p_value))  # the smallest of 3 p-values
    assert sw["sentence"].startswith("Strong is ahead of Weak by 62.5 points") and sw["significant"] == "True"
    assert sw["verdict"] == "Strong ahead"
    sn = pairs[("Strong", "Near")]
    assert "not distinguishable at this sample size" in sn["sentence"] and sn["significant"] == "False"
    assert float(sn["diff"]) == pytest.approx(0.0) and sn["n_problems"] == "40"
    md = (out / "report.md").read_text()
    assert "Strong is ahead of Weak by 62.5 points" in md and "Strong and Near are not distinguishable" in md


def test_several_samples_use_the_paired_bootstrap_even_when_scores_are_0_or_1(runs, tmp_path):
    ids = [f"math500/syn-{i:02d}" for i in range(12)]
    _rewrite(runs["base-math"], tmp_path / "a", {p: [i < 10] * 2 for i, p in enumerate(ids)})
    _rewrite(runs["base-math"], tmp_path / "b", {p: [i < 2] * 2 for i, p in enumerate(ids)})
    from reports.build import build_report

    build_report([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "rep",
                 labels=[f"{tmp_path / 'a'}=A", f"{tmp_path / 'b'}=B"])
    (p,) = _csv(tmp_path / "rep" / "tables" / "paired.csv")
    assert p["test"] == "paired_bootstrap" and float(p["diff"]) == pytest.approx(8 / 12)
    assert "paired bootstrap over 12 problems" in p["sentence"]


# ---------------------------------------------------------------------------------------------------- bad input


def _copy_train(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint-*", "evals"))
    return dst


def test_missing_summary_is_a_clear_error(runs, tmp_path):
    run = tmp_path / "unfinished"
    shutil.copytree(runs["base-math"], run)
    (run / "summary.json").unlink()
    proc = run_cli("report", str(run), "--out", str(tmp_path / "rep"), check=False)
    assert proc.returncode == 2 and f"{run / 'summary.json'}: no such file" in proc.stderr
    assert "resume" in proc.stderr and "Traceback" not in proc.stderr and not (tmp_path / "rep").exists()


def test_corrupt_metrics_line_names_file_and_line(runs, tmp_path):
    run = _copy_train(runs["train-tbrm"], tmp_path / "t")
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    (run / "metrics.jsonl").write_text("".join(lines))
    proc = run_cli_here("report", str(run), "--out", str(tmp_path / "rep"), check=False)
    assert proc.returncode == 2 and f"{run / 'metrics.jsonl'}:2: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_torn_last_metrics_line_is_skipped_and_noted_without_touching_the_file(runs, tmp_path):
    from reports.runs import load_train_run

    run = _copy_train(runs["train-tbrm"], tmp_path / "t")
    text = (run / "metrics.jsonl").read_text()
    torn = text + '{"step": 3, "reward/me'
    (run / "metrics.jsonl").write_text(torn)
    t = load_train_run(run)
    assert t.steps_done == 2 and any("torn last line" in n for n in t.notes)
    assert (run / "metrics.jsonl").read_text() == torn  # a report never modifies a run


@pytest.mark.parametrize("damage,message", [
    ("samples", "the files do not belong together"),
    ("missing_samples", "math500.jsonl: no such file"),
    ("bad_summary", "summary.json:1: not valid JSON"),
    ("no_field", "missing field 'outcome'"),
])
def test_damaged_eval_runs_name_the_file(runs, tmp_path, damage, message):
    run = tmp_path / "e"
    shutil.copytree(runs["base-math"], run)
    samples = run / "samples" / "math500.jsonl"
    if damage == "samples":  # outcomes edited after the summary was written
        samples.write_text(samples.read_text().replace('"outcome": "unparsed"', '"outcome": "correct"', 1))
    elif damage == "missing_samples":
        samples.unlink()
    elif damage == "bad_summary":
        (run / "summary.json").write_text("{not json")
    else:
        rows = [json.loads(x) for x in samples.read_text().splitlines()]
        del rows[1]["outcome"]
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli_here("report", str(run), "--out", str(tmp_path / "rep"), check=False)
    assert proc.returncode == 2 and message in proc.stderr and str(run) in proc.stderr, proc.stderr


def test_primaries_lead_the_report_and_a_smoke_run_gives_them_no_verdict(runs, tmp_path):
    out = tmp_path / "rep"
    run_cli("report", str(runs["tbrm-amc"]), str(runs["grpo-amc"]), str(runs["base-amc"]), "--out", str(out),
            "--primary", "tbrm N=1:grpo n=2", "--margin", "10")  # names match case-insensitively
    with open(out / "tables" / "primary.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["benchmark", "a", "b", "seeds_a", "seeds_b", "test", "diff", "ci_low", "ci_high",
                                 "p", "p_holm", "p_tost", "p_tost_holm", "mde", "verdict"]
    (row,) = rows
    assert (row["benchmark"], row["a"], row["b"], row["seeds_a"], row["seeds_b"]) == ("amc23", "TBRM n=1",
                                                                                    "GRPO n=2", "1", "1")
    assert row["verdict"] == "inconclusive" and row["mde"] == ""  # one seed each: no method verdict, no power
    md = (out / "report.md").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## ")]
    assert heads[:2] == ["## Smoke run: no method verdicts", "## Primary comparisons (amc23)"]
    assert "TBRM n=1 vs GRPO n=2: inconclusive — a smoke run" in md
    pairs = {(p["method_a"], p["method_b"]): p for p in _csv(out / "tables" / "paired.csv")}
    assert pairs[("TBRM n=1", "GRPO n=2")]["family"] == "primary"
    assert all(p["family"] == "exploratory" for k, p in pairs.items() if k != ("TBRM n=1", "GRPO n=2"))


def test_a_primary_naming_a_method_not_in_the_runs_lists_the_methods(runs, tmp_path):
    proc = run_cli_here("report", str(runs["tbrm-amc"]), str(runs["base-amc"]), "--out", str(tmp_path / "r"),
                   "--primary", "TBRM n=1:PPO n=1", check=False)
    assert proc.returncode == 2 and "no method named 'PPO n=1'" in proc.stderr
    assert "'TBRM n=1'" in proc.stderr and "(base)'" in proc.stderr and not (tmp_path / "r").exists()
    proc = run_cli_here("report", str(runs["tbrm-amc"]), "--out", str(tmp_path / "r"), "--primary", "TBRM n=1",
                   check=False)
    assert proc.returncode == 2 and "expected 'METHOD A:METHOD B'" in proc.stderr
    proc = run_cli_here("report", str(runs["tbrm-amc"]), "--out", str(tmp_path / "r"), "--main-benchmark", "aime24",
                   check=False)
    assert proc.returncode == 2 and "'amc23'" in proc.stderr
    proc = run_cli_here("report", str(runs["tbrm-amc"]), "--out", str(tmp_path / "r"), "--margin", "0", check=False)
    assert proc.returncode == 2 and "--margin" in proc.stderr


def test_bad_arguments(runs, tmp_path):
    not_run = tmp_path / "empty"
    not_run.mkdir()
    proc = run_cli_here("report", str(not_run), "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    proc = run_cli_here("report", str(runs["base-math"]), "--out", str(tmp_path / "r"), "--label", "/elsewhere=X",
                   check=False)
    assert proc.returncode == 2 and "not one of the run directories" in proc.stderr
    proc = run_cli_here("report", str(runs["base-math"]), "--out", str(runs["base-math"]), check=False)
    assert proc.returncode == 2 and "is one of the run directories" in proc.stderr
    proc = run_cli_here("report", str(runs["base-math"]), "--out", str(tmp_path / "r"), "--alpha", "1.5", check=False)
    assert proc.returncode == 2 and "--alpha" in proc.stderr


# ---------------------------------------------------------------------------------------------------- browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


class _DomScan(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs: list[dict] = []
        self.tables: dict[str, int] = {}
        self._table: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = 0
        if tag == "tr" and self._table is not None:
            self.tables[self._table] += 1
        for k in ("src", "href"):
            if a.get(k, "").startswith(("http:", "https:", "//")):
                self.external.append(a[k])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


def test_report_html_renders_in_headless_chromium(full_report, tmp_path):
    chrome = _chromium()
    if chrome is None:
        pytest.skip("chromium not found (apt-get install -y chromium); .ci/run installs it in CI")
    import matplotlib.image as mpimg
    import numpy as np

    out, _ = full_report
    html_path = (out / "report.html").resolve()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chrome, *CHROME_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    scan = _DomScan()
    scan.feed(dom.stdout)
    figs = {i.get("id"): i for i in scan.imgs}
    assert {"fig-table1", "fig-curves_vs_step", "fig-curves_vs_time", "fig-curves_vs_rollouts",
            "fig-efficiency"} <= set(figs)
    for img in scan.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        data = base64.b64decode(img["src"].split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    # header row + one row per line of each table
    assert scan.tables["table1"] == 1 + 4 and scan.tables["paired"] == 1 + 6
    assert scan.tables["efficiency"] == 1 + 2 and scan.tables["training"] == 1 + 2
    assert not scan.external  # self-contained
    assert "GRPO two-problem slice" in dom.stdout and "different problem sets" in dom.stdout

    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chrome, *CHROME_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                               "--window-size=1280,5000", html_path.as_uri()], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = mpimg.imread(str(shot))
    # Tall enough to hold the figures and the mismatch warning: the report leads with Table 1 and the verdicts
    # in words, and a 2000-pixel screen of those is nearly all black and white.
    assert pixels.shape[:2] == (5000, 1280)
    gray = pixels[..., :3].mean(axis=2)
    assert gray.std() > 0.05  # not blank
    assert (gray < 0.5).mean() > 0.005  # text and figure lines drawn
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean() > 0.001  # colour: warning box / plotted lines


def test_two_base_models_group_rows_and_name_methods_by_base(runs, tmp_path, tiny_model_path):
    """The paper's Table 1 has two model sizes: rows group by base model (base first) and method labels say
    which base they were trained from."""
    from reports.build import build_report

    qwen = "Qwen/Qwen2.5-Math-7B"
    qbase = tmp_path / "qwen-base"
    shutil.copytree(runs["base-math"], qbase)
    s = json.loads((qbase / "summary.json").read_text())
    s.update(model=qwen, model_path=qwen, fingerprint={"model": qwen, "kind": "hub"})
    (qbase / "summary.json").write_text(json.dumps(s))
    ckpt = tmp_path / "qwen-train" / "checkpoint-760"  # what the loader reads of a checkpoint: its train_config
    ckpt.mkdir(parents=True)
    tc = json.loads((runs["train-tbrm"] / "checkpoint-2" / "train_config.json").read_text())
    (ckpt / "train_config.json").write_text(json.dumps({**tc, "model": qwen, "steps": 760}))
    qtbrm = tmp_path / "qwen-tbrm"
    shutil.copytree(runs["tbrm-math"], qtbrm)
    s = json.loads((qtbrm / "summary.json").read_text())
    s.update(model=str(ckpt), model_path=str(ckpt), fingerprint={"model": str(ckpt), "kind": "local"})
    (qtbrm / "summary.json").write_text(json.dumps(s))
    build_report([str(runs["tbrm-math"]), str(qtbrm), str(runs["base-math"]), str(qbase)], tmp_path / "rep")
    labels = [r["label"] for r in _csv(tmp_path / "rep" / "tables" / "table1.csv")]
    tiny = Path(tiny_model_path).name
    assert labels == [f"{tiny} (base)", f"TBRM n=1 ({tiny})", "Qwen2.5-Math-7B (base)", "TBRM n=1 (Qwen2.5-Math-7B)"]


def test_a_checkpoint_of_a_longer_run_at_another_runs_final_step_shares_its_row(runs, tmp_path):
    """Seeds continued past step 2 (as cpu-full continues cpu) but evaluated at checkpoint-2 are the same method
    as a 2-step run's final checkpoint: one row, no "@ step"; a checkpoint at another step is marked, and so is
    an intermediate checkpoint evaluated alone."""
    from reports.build import build_report

    tc = json.loads((runs["train-tbrm"] / "checkpoint-2" / "train_config.json").read_text())

    def eval_of(name: str, ckpt_name: str, steps: int, seed: int) -> str:
        ckpt = tmp_path / f"train-{name}" / ckpt_name
        ckpt.mkdir(parents=True)
        (ckpt / "train_config.json").write_text(json.dumps({**tc, "steps": steps, "seed": seed}))
        ev = tmp_path / f"eval-{name}"
        shutil.copytree(runs["tbrm-math"], ev)
        s = json.loads((ev / "summary.json").read_text())
        s.update(model=str(ckpt), model_path=str(ckpt), fingerprint={"model": str(ckpt), "kind": "local"})
        (ev / "summary.json").write_text(json.dumps(s))
        return str(ev)

    final2 = eval_of("final", "checkpoint-2", 2, 0)
    longer = eval_of("longer", "checkpoint-2", 4, 1)
    early = eval_of("early", "checkpoint-1", 2, 2)
    build_report([final2, longer], tmp_path / "same")
    assert [(r["label"], r["n_seeds"]) for r in _csv(tmp_path / "same" / "tables" / "table1_seeds.csv")] == [
        ("TBRM n=1", "2")]
    build_report([final2, longer, early], tmp_path / "mixed")
    assert sorted(r["label"] for r in _csv(tmp_path / "mixed" / "tables" / "table1.csv")) == [
        "TBRM n=1", "TBRM n=1 @ step 1", "TBRM n=1 @ step 2"]
    build_report([longer], tmp_path / "alone")
    assert [r["label"] for r in _csv(tmp_path / "alone" / "tables" / "table1.csv")] == ["TBRM n=1 @ step 2"]
