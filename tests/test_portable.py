"""evals.portable: paths in files the suite writes are relative to the file's folder, or labels; never absolute,
never the home directory."""

from __future__ import annotations

from pathlib import Path

from evals.portable import leaks, portable_model, portable_path, scrub


def test_paths_under_a_common_folder_become_relative(tmp_path):
    out = tmp_path / "repro" / "report-cpu"
    run = tmp_path / "repro" / "evals" / "base-heldout-200"
    assert portable_path(run, out) == "../evals/base-heldout-200"
    assert portable_path(out / "figures", out) == "figures"
    assert portable_path(out, out) == "."


def test_paths_that_would_climb_to_the_root_or_name_home_become_labels(monkeypatch, tmp_path):
    home = tmp_path / "home" / "alice"
    (home / "runs" / "r1").mkdir(parents=True)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: home))
    elsewhere = tmp_path / "srv" / "report"
    # only the tmp folder is shared, and it holds the home dir: "../../home/alice/runs/r1" would name it
    assert portable_path(home / "runs" / "r1", elsewhere) == "r1"
    assert portable_path("/opt/models/qwen", "/srv/report") == "qwen"  # only "/" in common
    assert portable_path(home / "runs" / "r1", home / "report") == "../runs/r1"  # inside home: relative is fine
    assert leaks(f"model at {home}/x", tmp_path / "nothing") == [str(home)]


def test_models_are_named_not_located(tmp_path):
    assert portable_model("smollm2", "/root/.cache/tbrm-bench/smollm2-135m-instruct", tmp_path) == \
        "smollm2-135m-instruct"
    assert portable_model("Qwen/Qwen2.5-Math-7B", "Qwen/Qwen2.5-Math-7B", tmp_path) == "Qwen/Qwen2.5-Math-7B"
    ckpt = tmp_path / "train" / "tbrm-n1" / "checkpoint-40"
    ckpt.mkdir(parents=True)
    assert portable_model(str(ckpt), str(ckpt), tmp_path / "evals" / "e") == "../../train/tbrm-n1/checkpoint-40"


def test_scrub_replaces_longest_paths_first():
    text = "/a/runs/x: 3 of 4 steps; /a/runs: done"
    assert scrub(text, {"/a/runs": "runs", "/a/runs/x": "../x"}) == "../x: 3 of 4 steps; runs: done"
