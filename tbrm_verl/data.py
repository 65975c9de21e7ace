"""Problems (DAPO-Math-17k from the hub, a JSONL/Parquet file, a registry benchmark) -> verl's RL parquet.

One row per problem, in the layout verl's ``RLHFDataset`` and reward loop read:

- ``prompt``: the chat messages of the recipe's template (``evals.prompts.chat_messages``: the Qwen2.5-Math
  system prompt and the problem), which verl renders with the tokenizer's chat template, as ``tbrm eval`` does;
- ``data_source``: the dataset's name; ``ability``: ``"math"``;
- ``reward_model``: ``{"style": "rule", "ground_truth": gold answer}`` (what ``tbrm_verl.reward`` grades against);
- ``extra_info``: ``{"index", "id", "split"}`` so that a verl generation can be traced back to its problem.
"""

from __future__ import annotations

import os
from pathlib import Path

from evals.problem import Problem
from tbrm.config import TrainConfig


def verl_rows(problems: list[Problem], template: str, data_source: str, split: str) -> list[dict]:
    from evals.prompts import chat_messages

    return [{
        "data_source": data_source,
        "prompt": chat_messages(p.problem, template),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": p.answer},
        "extra_info": {"index": i, "id": p.id, "split": split},
    } for i, p in enumerate(problems)]


def write_parquet(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write `rows` atomically (a crash leaves the old file or none, never half a file)."""
    import pandas as pd

    if not rows:
        raise ValueError(f"{path}: no problems to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def train_problems(cfg: TrainConfig) -> tuple[list[Problem], str]:
    """The recipe's training problems (hub or file, exactly as this suite's trainer loads them) and their name."""
    from tbrm.data import prompt_source

    source = prompt_source(cfg)
    if source.problems is None:
        raise ValueError(f"data={cfg.data} is a generated stream; verl needs a fixed set of problems (hub or file)")
    return source.problems, Path(str(cfg.data_path)).stem if cfg.data == "file" else str(cfg.data_path).split("/")[-1]


def val_problems(cfg: TrainConfig, data_dir: str | None = None) -> tuple[list[Problem], str]:
    """The recipe's held-out benchmark slice (local data folder when present, else the hub)."""
    from evals.benchmarks import load_benchmark

    name = cfg.eval_benchmark or "math500"
    return load_benchmark(name, data_dir=data_dir, limit=cfg.eval_problems), name


def convert(cfg: TrainConfig, run_dir: str | os.PathLike, train_file: str, val_file: str,
            data_dir: str | None = None) -> dict:
    """Write the train and validation parquet files under `run_dir`; returns counts for the run summary."""
    train, train_name = train_problems(cfg)
    val, val_name = val_problems(cfg, data_dir)
    write_parquet(verl_rows(train, cfg.template, train_name, "train"), Path(run_dir) / train_file)
    write_parquet(verl_rows(val, cfg.template, val_name, "test"), Path(run_dir) / val_file)
    return {"train": {"source": train_name, "problems": len(train), "file": train_file},
            "val": {"source": val_name, "problems": len(val), "file": val_file}}
