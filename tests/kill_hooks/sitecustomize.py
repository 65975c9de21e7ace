"""Test-only kill points for the resume tests: a real SIGKILL of a `tbrm` process at a chosen point of its run.

Python imports `sitecustomize` at start-up from the first folder on its path that holds one; `tests/conftest.py`
(`kill_env`) puts this folder on PYTHONPATH, so the `tbrm` process a test starts, and every `tbrm` process that one
starts in turn (the stages of `tbrm reproduce`), load it. The suite's own code knows nothing of these hooks: this
module wraps one function of a module when that module is first imported.

TBRM_KILL_AFTER_STEP=N     training: killed as step N+1 begins, once step N is logged and, if due, checkpointed
                           (wraps `tbrm.trainer.Trainer.step`)
TBRM_KILL_AFTER_BATCHES=N  evaluation: killed once the process has appended its N-th batch of samples
                           (wraps `evals.runner.evaluate_problems`, through its `on_batch` callback)
"""

from __future__ import annotations

import functools
import os
import signal
import sys


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_in_training(module, after_step: int) -> None:
    step = module.Trainer.step

    @functools.wraps(step)
    def step_or_die(self, n: int):
        if n == after_step + 1:
            _kill()
        return step(self, n)

    module.Trainer.step = step_or_die


def _kill_in_evaluation(module, after_batches: int) -> None:
    evaluate = module.evaluate_problems
    written = 0

    @functools.wraps(evaluate)
    def evaluate_or_die(*args, on_batch=None, **kwargs):
        def counted(rows):
            nonlocal written
            if on_batch is not None:
                on_batch(rows)
            written += 1
            if written >= after_batches:
                _kill()

        return evaluate(*args, on_batch=counted, **kwargs)

    module.evaluate_problems = evaluate_or_die


class _WrapOnImport:
    """A meta-path finder that lets the other finders find a module, then runs `patch(module)` after it loads."""

    def __init__(self, patches: dict):
        self.patches = patches

    def find_spec(self, name, path=None, target=None):
        patch = self.patches.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                load = spec.loader.exec_module

                def exec_module(module, load=load):
                    load(module)
                    patch(module)

                spec.loader.exec_module = exec_module  # the loader instance belongs to this one module
                return spec
        return None


def _install() -> None:
    patches = {}
    if os.environ.get("TBRM_KILL_AFTER_STEP"):
        n = int(os.environ["TBRM_KILL_AFTER_STEP"])
        patches["tbrm.trainer"] = lambda m: _kill_in_training(m, n)
    if os.environ.get("TBRM_KILL_AFTER_BATCHES"):
        n = int(os.environ["TBRM_KILL_AFTER_BATCHES"])
        patches["evals.runner"] = lambda m: _kill_in_evaluation(m, n)
    if patches:
        sys.meta_path.insert(0, _WrapOnImport(patches))


_install()
