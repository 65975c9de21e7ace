"""The lists derived from config field metadata: which training settings may change on resume (and so do not make
two runs different methods), which evaluation settings a resumed evaluation must match, and `tbrm eval`'s flags.
A field added without its classification fails here."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields

import pytest

from evals.dataclass_args import add_dataclass_arguments, dataclass_from_args
from evals.runner import EvalConfig
from tbrm.config import RESUMABLE_CHANGES, TrainConfig, load_config, to_dict


def test_every_train_setting_says_whether_a_run_may_resume_with_another_value():
    unclassified = [f.name for f in fields(TrainConfig) if not isinstance(f.metadata.get("resumable"), bool)]
    assert unclassified == [], "declare these TrainConfig fields with config.fixed(...) or config.resumable(...)"
    assert {"steps", "device", "generation_batch_size", "engine_kv_cache_gb"} <= RESUMABLE_CHANGES
    assert not {"lr", "algorithm", "seed", "beta", "rollouts_per_prompt"} & RESUMABLE_CHANGES


def test_runs_differing_only_in_resumable_settings_are_one_method():
    """The engine's KV-cache size changes memory, not what is sampled: seeds that differ only there are one method
    (the report's list of such settings is the trainer's resume list plus the seed)."""
    from reports.seed_tables import NOT_METHOD, method_key

    assert NOT_METHOD == {"seed"} | RESUMABLE_CHANGES
    base = to_dict(load_config("cpu-tbrm-n1"))
    assert method_key(base) == method_key({**base, "seed": 3, "engine_kv_cache_gb": 8.0, "engine": "hf",
                                           "generation_batch_size": 16})
    assert method_key(base) != method_key({**base, "lr": 1e-3})


def test_every_eval_setting_is_classified_and_documented():
    for f in fields(EvalConfig):
        assert isinstance(f.metadata.get("identity"), bool), f"EvalConfig.{f.name}: say whether resume must match it"
        assert f.metadata.get("help"), f"EvalConfig.{f.name}: give it help text (it is a `tbrm eval` flag)"
    identity = set(EvalConfig.identity_fields())
    assert {"model", "benchmarks", "samples", "temperature", "seed", "lenient", "engine", "batch_size"} <= identity
    assert not {"device", "threads", "kv_cache_gb", "data_parallel_size", "verifier_workers", "audit"} & identity
    # runs written before these fields: transformers generated, and no endpoint settings applied
    assert EvalConfig.identity_absent() == {"engine": "hf", "api": None, "strip_thinking": None,
                                             "reasoning_api": False}


def test_eval_flags_are_the_config_fields():
    from tbrm.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["eval"]
    flags = {o for a in sub._actions for o in a.option_strings}
    assert {"--" + f.name.replace("_", "-") for f in fields(EvalConfig)} <= flags
    args = parser.parse_args(["eval", "--out", "x", "--limit", "3", "--benchmarks", "aime24", "amc23", "--compile",
                              "--kv-cache-gb", "0.5", "--template", "plain"])
    cfg = dataclass_from_args(EvalConfig, args)
    assert cfg == EvalConfig(limit=3, benchmarks=["aime24", "amc23"], compile=True, kv_cache_gb=0.5, template="plain")
    assert dataclass_from_args(EvalConfig, parser.parse_args(["eval", "--out", "x"])) == EvalConfig()
    only_file = parser.parse_args(["eval", "--out", "x", "--data-file", "p.jsonl"])
    assert dataclass_from_args(EvalConfig, only_file).benchmarks == []  # a file alone: not math500 as well
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--out", "x", "--template", "nope"])  # choices come from the metadata


def test_a_new_field_becomes_a_flag_and_an_undocumented_one_is_refused():
    @dataclass
    class Config:
        endpoint: str | None = field(default=None, metadata={"help": "server URL", "group": "server"})
        retries: int = field(default=3, metadata={"help": "tries per request (100% of them logged)"})
        names: list[str] = field(default_factory=lambda: ["a"], metadata={"help": "names"})
        verbose: bool = field(default=False, metadata={"help": "say more"})

    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Config)
    assert "100% of them" in p.format_help()
    got = dataclass_from_args(Config, p.parse_args(["--endpoint", "http://h:1", "--retries", "5", "--names", "b", "c",
                                                    "--verbose"]))
    assert got == Config("http://h:1", 5, ["b", "c"], True)
    assert dataclass_from_args(Config, p.parse_args([])) == Config()

    @dataclass
    class Undocumented:
        x: int = 1

    with pytest.raises(TypeError, match="Undocumented.x"):
        add_dataclass_arguments(argparse.ArgumentParser(), Undocumented)
