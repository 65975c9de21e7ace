"""Where training prompts come from: deterministic in the step number, so a resumed run draws exactly the
prompts an uninterrupted run would have drawn (the data position is the step)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from evals.problem import Problem
from tbrm.config import TrainConfig


class PromptSource:
    def __init__(self, problems_or_task, prompts_per_step: int, seed: int):
        self.per_step = prompts_per_step
        self.seed = seed
        if isinstance(problems_or_task, list):
            if not problems_or_task:
                raise ValueError("no training problems")
            self.problems, self.stream = problems_or_task, None
        else:
            self.problems, self.stream = None, problems_or_task.train_stream(seed)
            self._cache: list[Problem] = []

    def batch(self, step: int) -> list[Problem]:
        """Prompts of step `step` (1-based)."""
        lo, hi = (step - 1) * self.per_step, step * self.per_step
        if self.stream is not None:
            while len(self._cache) < hi:
                self._cache.append(next(self.stream))
            return self._cache[lo:hi]
        n = len(self.problems)
        out = []
        for i in range(lo, hi):  # epoch-wise shuffles, each fixed by (seed, epoch)
            epoch, j = divmod(i, n)
            out.append(self.problems[_permutation(n, self.seed, epoch)[j]])
        return out


_PERM_CACHE: dict[tuple[int, int, int], list[int]] = {}


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        order = list(range(n))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        _PERM_CACHE.clear()
        _PERM_CACHE[key] = order
    return _PERM_CACHE[key]


def arithmetic_task(cfg: TrainConfig):
    from tbrm.tasks import ArithmeticTask

    return ArithmeticTask(digits=tuple(cfg.arith_digits), ops=tuple(cfg.arith_ops), heldout_size=cfg.heldout_size)


def prompt_source(cfg: TrainConfig) -> PromptSource:
    if cfg.data == "arithmetic":
        return PromptSource(arithmetic_task(cfg), cfg.prompts_per_step, cfg.seed)
    if cfg.data == "file":
        from evals.benchmarks import load_problems_file

        problems = load_problems_file(cfg.data_path, problem_field=cfg.problem_field, answer_field=cfg.answer_field)
        return PromptSource(problems, cfg.prompts_per_step, cfg.seed)
    from datasets import load_dataset

    from evals.benchmarks import FieldMap, problems_from_records

    rows = load_dataset(cfg.data_path, cfg.data_config, split="train")
    problems = problems_from_records(enumerate(rows, start=1), fields=FieldMap(cfg.problem_field, cfg.answer_field, None),
                                     name=cfg.data_path.split("/")[-1], origin=cfg.data_path)
    return PromptSource(problems, cfg.prompts_per_step, cfg.seed)


def heldout_sets(cfg: TrainConfig) -> dict[str, list[Problem]]:
    """Held-out evaluation problems: the arithmetic held-out split (never trained on) and/or a benchmark slice."""
    out = {}
    if cfg.data == "arithmetic":
        out["heldout"] = arithmetic_task(cfg).problems("heldout", n=min(cfg.eval_problems, cfg.heldout_size))
    if cfg.eval_benchmark or cfg.data != "arithmetic":
        from evals.benchmarks import load_benchmark

        name = cfg.eval_benchmark or "math500"
        out[name] = load_benchmark(name, limit=cfg.eval_problems)
    return out


@dataclass
class Trajectory:
    prompt: str  # the problem text (rendered with the run's template) or, with `rendered`, the full prompt
    response: str
    reward: float
    stopped: bool  # the response ended with EOS (then EOS is part of the trajectory)
    source: str


def load_trajectories(path: str | Path) -> list[Trajectory]:
    """Off-policy data: JSONL/Parquet rows with `prompt`, `response`, `reward` (and optional `finish_reason`:
    "stop" appends EOS to the response, as the sampling model emitted it; default "stop")."""
    from evals.benchmarks import DataError, field_value, read_records

    path = Path(path)
    out = []
    for line, rec in read_records(path):
        prompt = field_value(rec, "prompt", path=path, line=line, kind="problem")
        response = rec.get("response") if isinstance(rec, dict) else None
        if not isinstance(response, str):
            raise DataError(path, line, "response", "missing or not a string")
        reward = rec.get("reward")
        if isinstance(reward, bool) or not isinstance(reward, (int, float)):
            raise DataError(path, line, "reward", f"must be a number, got {reward!r}")
        finish = rec.get("finish_reason", "stop")
        if finish not in ("stop", "length"):
            raise DataError(path, line, "finish_reason", f"must be 'stop' or 'length', got {finish!r}")
        out.append(Trajectory(prompt, response, float(reward), finish == "stop", f"{path}:{line}"))
    if not out:
        raise DataError(path, None, None, "no trajectories")
    return out
