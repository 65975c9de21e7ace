"""The `Generator` protocol (evals/engines/base.py) declares every method the runner and the trainer call, every
engine has all of them (its own or `GeneratorBase`'s default) with a signature the callers' arguments fit, and
`EngineError` comes from a module that imports no torch, so the command line catches it without loading torch.
Classes only: no engine is started here."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from evals.engines.base import EngineError, Generator, GeneratorBase


def _protocol_methods() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(value) for name, value in vars(Generator).items()
            if callable(value) and not name.startswith("_")}


def _engines() -> list[type]:
    from evals.engines.hf import HFGenerator
    from evals.engines.openai_engine import OpenAIGenerator
    from evals.engines.vllm_data_parallel import DataParallelVLLM
    from evals.engines.vllm_engine import VLLMGenerator

    return [HFGenerator, VLLMGenerator, DataParallelVLLM, OpenAIGenerator]


def test_the_protocol_declares_what_runner_and_trainer_call():
    assert {"plan", "run_batch", "run_batches", "encode", "render", "engine_record", "request_stats", "load_weights",
            "sleep", "close"} <= set(_protocol_methods())


@pytest.mark.parametrize("engine", _engines(), ids=lambda c: c.__name__)
def test_every_engine_has_every_protocol_method_with_a_fitting_signature(engine):
    for name, declared in _protocol_methods().items():
        method = getattr(engine, name, None)
        assert callable(method), f"{engine.__name__} lacks {name}"
        # the arguments a caller passes by the protocol (positionally, self included) bind to the engine's method
        args = [object()] * len(declared.parameters)
        inspect.signature(method).bind(*args)
    assert issubclass(engine, GeneratorBase)
    assert issubclass(EngineError, RuntimeError)


def test_defaults_of_the_optional_methods():
    class OneBatch(GeneratorBase):
        def plan(self, prompts, params):
            return [[(i, 0)] for i in range(len(prompts))]

        def run_batch(self, prompts, batch, batch_index, params):
            return [f"{prompts[pi]}:{batch_index}" for pi, _ in batch]

    g = OneBatch()
    batches = list(enumerate(g.plan(["a", "b"], None)))
    assert list(g.run_batches(["a", "b"], batches, None)) == [(0, ["a:0"]), (1, ["b:1"])]
    assert (g.request_stats(), g.load_weights(object()), g.sleep(), g.close()) == (None, None, None, None)
    assert g.engine_record()["name"] == "hf"
    with pytest.raises(EngineError, match="no tokenizer"):
        g.encode("a")


def test_no_hasattr_probing_of_engines():
    # Every optional method has a default, so the callers call it instead of asking whether it exists.
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for rel in ("evals/runner.py", "evals/engines/base.py", "tbrm/trainer.py", "tbrm/rollout.py"):
        text = (root / rel).read_text()
        assert "hasattr(generator" not in text and "hasattr(self.generator" not in text, rel
        assert 'getattr(generator, "render"' not in text, rel


@pytest.mark.parametrize("args", [["--help"], ["eval", "--help"], ["grade", "--help"], ["train", "--help"],
                                  ["report", "--help"]], ids=" ".join)
def test_tbrm_help_imports_no_torch(args):
    """`tbrm ... --help` in a fresh interpreter: torch (and vLLM, transformers) stay unloaded."""
    code = ("import sys\nfrom tbrm.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'vllm', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:]
    assert "usage: tbrm" in out.stdout
