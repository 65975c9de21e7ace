"""The Python API (`tbrm.evaluate`, `tbrm.grade`, `tbrm.train`, `tbrm.report`, `tbrm.Verifier`) called directly
on the tiny Llama: each returns what it writes, an unknown keyword is refused with the valid names, and
`import tbrm` loads no heavy library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tbrm
from tbrm.config import ConfigError
from tests.conftest import REPO
from tests.test_train_e2e import FAST


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def trained(tiny_model_path, tmp_path_factory) -> tuple[Path, tbrm.api.TrainResult]:
    out = tmp_path_factory.mktemp("api-train") / "run"
    # overrides as on the command line, then keyword arguments (applied last: steps=2 wins over FAST's)
    result = tbrm.train(out=out, overrides=[*FAST, "steps=3", "tensorboard=false"], model=tiny_model_path,
                        algorithm="tbrm", engine="hf", steps=2, progress=False)
    return out, result


@pytest.fixture(scope="module")
def evaluated(tiny_model_path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("api-eval") / "base"
    summary = tbrm.evaluate(out=out, model=Path(tiny_model_path), benchmarks="math500", limit=2, max_new_tokens=4,
                            engine="hf", batch_size=8, progress=False, print_table=False)
    return out, summary


def test_import_tbrm_loads_no_heavy_library():
    """In a fresh interpreter: `import tbrm`, and looking up every public name, imports no torch, transformers or
    vLLM (they load when a function runs)."""
    code = ("import sys, tbrm\n"
            "heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'vllm'))\n"
            "before = heavy()\n"
            "names = [getattr(tbrm, n).__name__ for n in tbrm.__all__]\n"
            "print(before, heavy(), names)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "[] [] ['evaluate', 'grade', 'train', 'report', 'Verifier']"


def test_facade_names_are_the_api_and_the_verifier():
    from evals.grading.verifier import Verifier

    assert sorted(tbrm.__all__) == sorted(["evaluate", "grade", "train", "report", "Verifier"])
    assert (tbrm.evaluate, tbrm.grade, tbrm.train, tbrm.report) == (tbrm.api.evaluate, tbrm.api.grade,
                                                                    tbrm.api.train, tbrm.api.report)
    assert tbrm.Verifier is Verifier and {"verify", "verify_batch"} <= set(dir(tbrm.Verifier))
    assert all(f.__doc__ and "Returns:" in f.__doc__ for f in (tbrm.evaluate, tbrm.grade, tbrm.train, tbrm.report))
    with pytest.raises(AttributeError, match="no attribute 'evalute'"):
        tbrm.evalute  # noqa: B018


def test_verifier_from_the_facade_grades_one_answer_and_a_batch():
    with tbrm.Verifier(workers=1) as v:
        assert v.verify("so the answer is \\boxed{1/2}", "\\frac{1}{2}").outcome.value == "correct"
        assert [x.outcome.value for x in v.verify_batch([("\\boxed{3}", "3"), ("\\boxed{4}", "3")])] == \
            ["correct", "wrong"]


@pytest.mark.parametrize("call,bad,valid", [
    (lambda out: tbrm.evaluate(out=out, modle="smollm2"), "'modle' (did you mean 'model'?)", "max_new_tokens"),
    (lambda out: tbrm.grade(out / "f.jsonl", out=out, answer="gold"), "'answer' (did you mean 'answer_field'?)",
     "verifier_timeout"),
    (lambda out: tbrm.train(out=out, stpes=2), "'stpes' (did you mean 'steps'?)", "rollouts_per_prompt"),
    (lambda out: tbrm.train(out=out, overrides={"stepz": 2}), "'stepz' (did you mean 'steps'?)", "lr"),
    (lambda out: tbrm.report([out], out=out, primary=["A:B"]), "'primary' (did you mean 'primaries'?)",
     "main_benchmark"),
])
def test_an_unknown_keyword_is_refused_naming_it_and_the_valid_ones(tmp_path, call, bad, valid):
    out = tmp_path / "out"
    with pytest.raises(TypeError, match="unknown keyword argument") as e:
        call(out)
    assert bad in str(e.value) and "valid: " in str(e.value) and valid in str(e.value)
    assert not out.exists()  # refused before anything is written


def test_train_settings_layer_in_order_and_bad_values_fail_before_training(tmp_path):
    cfg = tbrm.api.train_config("cpu-tbrm-n1", ["steps=3", "lr=1e-3"], steps=5, arith_digits=(1, 2))
    assert (cfg.steps, cfg.lr, cfg.arith_digits) == (5, 1e-3, [1, 2])
    assert tbrm.api.train_config(overrides={"steps": 7}).steps == 7
    with pytest.raises(ConfigError, match="steps"):
        tbrm.train(out=tmp_path / "t", steps="many")
    assert not (tmp_path / "t").exists()


def test_evaluate_returns_the_summary_it_writes(evaluated):
    out, summary = evaluated
    assert summary == json.loads((out / "summary.json").read_text())
    bench = summary["benchmarks"]["math500"]
    assert summary["config"]["benchmarks"] == ["math500"] and summary["config"]["limit"] == 2
    assert bench["n_problems"] == 2 and bench["n_samples"] == 1
    rows = _jsonl(out / "samples" / "math500.jsonl")
    assert len(rows) == 2 and sum(bench["outcomes"].values()) == 2
    assert bench["avg@1"]["value"] == pytest.approx(sum(r["outcome"] == "correct" for r in rows) / 2)


def test_grade_returns_the_rows_it_writes(tmp_path):
    rows = [{"id": "p1", "response": "so the answer is \\boxed{25}", "gold": "025"},
            {"id": "p1", "response": "I think \\boxed{24}", "gold": "025"},
            {"id": "p2", "response": "no idea", "gold": "$\\frac{1}{2}$"},
            {"id": "p2", "response": "\\boxed{0.5}", "gold": "$\\frac{1}{2}$"}]
    f = tmp_path / "gens.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    graded = tbrm.grade(f, answer_field="gold", id_field="id", verifier_workers=1, progress=False,
                        print_table=False)
    out = tmp_path / "gens.graded"  # the command line's default folder
    assert graded == _jsonl(out / "graded.jsonl")
    assert [(g["problem_id"], g["sample_index"], g["outcome"]) for g in graded] == \
        [("p1", 0, "correct"), ("p1", 1, "wrong"), ("p2", 0, "unparsed"), ("p2", 1, "correct")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_rows"] == 4 and summary["metrics"]["avg@2"]["value"] == pytest.approx(0.5)


def test_train_returns_the_run_folder_config_and_metrics_it_writes(trained, tiny_model_path):
    out, result = trained
    assert result.path == out and Path(result) == out and os.fspath(result) == str(out)
    assert result.config == json.loads((out / "train_config.json").read_text())
    assert (result.config["steps"], result.config["model"], result.config["tensorboard"]) == \
        (2, tiny_model_path, False)
    assert result.metrics == _jsonl(out / "metrics.jsonl") and [r["step"] for r in result.metrics] == [0, 1, 2]
    assert result.checkpoints == [out / "checkpoint-1", out / "checkpoint-2"]
    assert any(k.startswith("eval/") and k.endswith("/accuracy") for k in result.metrics[-1])  # held-out score


def test_report_returns_the_paths_it_writes(trained, evaluated, tmp_path):
    (eval_dir, _), (_, train_result) = evaluated, trained
    paths = tbrm.report([eval_dir, train_result], out=tmp_path / "rep", labels={eval_dir: "Tiny base"},
                        title="API report")
    out = tmp_path / "rep"
    assert (paths.out, paths.markdown, paths.html) == (out, out / "report.md", out / "report.html")
    assert sorted(paths.tables) == sorted(out.glob("tables/*.csv")) and out / "tables" / "runs.csv" in paths.tables
    assert sorted(paths.figures) == sorted(out.glob("figures/*.png")) and paths.figures
    md = paths.markdown.read_text()
    assert md.startswith("# API report") and "Tiny base" in md and paths.html.exists()
    assert isinstance(paths.warnings, list)
