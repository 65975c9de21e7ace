"""`tbrm.evaluate/grade/train/report` refuse a value of the wrong type before doing anything, naming the setting and
the type it takes (the settings dataclasses' annotations, or the function's), instead of failing deep inside a run
or, worse, running with it (``samples=2.5``)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

import tbrm
from evals.dataclass_args import describe_type, value_fits
from tbrm.config import ConfigError


@pytest.mark.parametrize("call, message", [
    (lambda out: tbrm.evaluate(out=out, temperature="0.6"), "temperature='0.6' is a str; it takes a float or None"),
    (lambda out: tbrm.evaluate(out=out, samples=2.5), "samples=2.5 is a float; it takes an int or None"),
    (lambda out: tbrm.evaluate(out=out, lenient="yes"), "lenient='yes' is a str; it takes a bool"),
    (lambda out: tbrm.evaluate(out=out, benchmarks=["math500", 500]), "benchmarks=['math500', 500] is a list; "
                                                                      "it takes a list of str or None"),
    (lambda out: tbrm.grade(out / "f.jsonl", out=out, verifier_timeout="5"),
     "grade(): verifier_timeout='5' is a str; it takes a float"),
    (lambda out: tbrm.grade(out / "f.jsonl", out=out, verifier_workers=1.5), "verifier_workers=1.5 is a float"),
    (lambda out: tbrm.report([out], out=out, alpha="0.05"), "report(): alpha='0.05' is a str; it takes a float"),
    (lambda out: tbrm.report(7, out=out), "runs=7 is an int; it takes a str or a path"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_setting_and_its_type(tmp_path, call, message):
    out = tmp_path / "out"
    with pytest.raises(TypeError) as e:
        call(out)
    assert message in str(e.value)
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize("settings, message", [
    ({"temperature": "0.6"}, "temperature='0.6' is a str; it takes a float"),
    ({"steps": 2.5}, "steps=2.5 is a float; it takes an int"),
    ({"tensorboard": "false"}, "tensorboard='false' is a str; it takes a bool"),
])
def test_train_refuses_wrong_types_as_a_config_error(tmp_path, settings, message):
    with pytest.raises(ConfigError) as e:
        tbrm.train("cpu-tbrm-n1", out=tmp_path / "t", **settings)
    assert message in str(e.value) and not (tmp_path / "t").exists()
    with pytest.raises(ConfigError, match=message.split(" is ")[0]):  # a dict of overrides is checked the same way
        tbrm.api.train_config("cpu-tbrm-n1", overrides=settings)
    # "key=value" strings are the command line's: read, not refused
    line = "=".join(map(str, next(iter(settings.items()))))
    if "steps" not in line:
        tbrm.api.train_config("cpu-tbrm-n1", [line])


def test_values_of_the_right_type_pass_the_check():
    cfg = tbrm.api.train_config("cpu-tbrm-n1", temperature=1, arith_digits=(1, 2), eval_benchmark=None)
    assert cfg.temperature == 1 and cfg.arith_digits == [1, 2]
    from evals.runner import EvalConfig

    hints = typing.get_type_hints(EvalConfig)
    assert value_fits(1, hints["temperature"]) and value_fits(None, hints["temperature"])
    assert value_fits(["math500"], hints["benchmarks"]) and not value_fits(True, hints["max_new_tokens"])
    assert value_fits(Path("x"), typing.get_type_hints(tbrm.api.grade)["file"])
    assert describe_type(hints["base_url"]) == "a list of str"


def test_the_command_lines_values_pass_the_check(tmp_path):
    """`tbrm eval` passes every EvalConfig field, a repeatable flag not given as None: none of that is refused
    (the run then stops on the missing data file, after the check)."""
    from tests.conftest import run_cli

    proc = run_cli("eval", "--model", "smollm2", "--data-file", str(tmp_path / "none.jsonl"), "--out",
                   str(tmp_path / "r"), check=False)
    assert "takes a" not in proc.stderr and "none.jsonl" in proc.stderr and proc.returncode == 2
