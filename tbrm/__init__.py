"""tbrm-bench from Python: train small LLMs for math reasoning with TBRM (or PPO/GRPO), score checkpoints on math
benchmarks through one shared verifier, and compare runs.

    import tbrm

    summary = tbrm.evaluate(model="smollm2", benchmarks=["math500"], limit=50, out="runs/base")
    run = tbrm.train("cpu-tbrm-n1", out="runs/tbrm", steps=40)
    tbrm.report(["runs/base", run], out="reports/mine")
    with tbrm.Verifier() as v:
        v.verify("... so the answer is \\boxed{1/2}", "\\frac{1}{2}").outcome  # Outcome.CORRECT

`evaluate`, `grade`, `train` and `report` are `tbrm.api`'s (each `tbrm` subcommand's job, settings as keyword
arguments); `Verifier` is `evals.grading.verifier.Verifier` (`verify`, `verify_batch`), for reward functions elsewhere.
Every name is imported on first use (PEP 562), so `import tbrm` loads no torch, transformers or vLLM.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evals.grading.verifier import Verifier
    from tbrm.api import evaluate, grade, report, train

__all__ = ["evaluate", "grade", "train", "report", "Verifier"]

_HOME = {"evaluate": "tbrm.api", "grade": "tbrm.api", "train": "tbrm.api", "report": "tbrm.api",
         "Verifier": "evals.grading.verifier"}


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'tbrm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
