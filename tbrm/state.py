"""What a checkpoint holds besides the model: optimizer, scheduler, algorithm and random-number-generator state.

Kept in the checkpoint's `trainer_state/` subfolder, so the checkpoint folder stays a model folder every loader takes
(vLLM loads every top-level *.safetensors as weights; `evals.models.TRAINER_STATE_DIR`). Checkpoints of earlier
versions hold the two files beside the weights: they count as complete, and loading their state (or evaluating them)
first moves the files into the subfolder (`evals.models.move_trainer_state_aside`).

Stored without pickle, so a run folder from someone else cannot run code when it is resumed: every tensor goes to
`trainer_state.safetensors`, everything else to `trainer_state.json`, where a tensor is `{"__tensor__": key}`, a
tuple `{"__tuple__": [...]}`, a NumPy array `{"__ndarray__": dtype, "data": [...]}` and a dict whose keys are not
all strings (the optimizer's parameter ids) `{"__items__": [[key, value], ...]}`. Floats round-trip exactly
(JSON keeps Python's shortest repr), so a resumed run retraces the uninterrupted one bit for bit. Any other type
is refused when saving.

RNG state is captured and restored on the host whatever device trains: `torch.set_rng_state` and
`torch.cuda.set_rng_state` both take a CPU ByteTensor, so the state is never moved to the training device. On CUDA
the training device's generator is saved and restored too, since sampling and dropout draw from it there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from evals.io import atomic_write_json
from evals.models import (TRAINER_STATE_DIR, TRAINER_STATE_FILES, TRAINER_STATE_JSON as STATE_JSON,
                          TRAINER_STATE_TENSORS as STATE_TENSORS, move_trainer_state_aside)

# What checkpoints held before: a pickle. Never unpickled; a run folder holding one is refused with a clear error.
LEGACY_STATE = "trainer_state.pt"
_MARKERS = ("__tensor__", "__tuple__", "__ndarray__", "__items__")


def capture_rng(device: torch.device) -> dict:
    """The Python, NumPy and torch CPU generators' states, and the CUDA generator's of `device` when it is a GPU."""
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def restore_rng(rng: dict, device: torch.device) -> None:
    """Set the generators `capture_rng` saved; a run saved on CUDA resumed on CUDA gets its GPU generator back."""
    torch.set_rng_state(rng["torch"].to("cpu", torch.uint8))
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"].to("cpu", torch.uint8), device)


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.dtype.str, "data": obj.tolist()}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(x, tensors) for x in obj]}
    if isinstance(obj, list):
        return [_encode(x, tensors) for x in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(m in obj for m in _MARKERS):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"trainer state: cannot store a {type(obj).__name__} without pickle ({obj!r:.80})")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(x, tensors) for x in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_decode(x, tensors) for x in obj["__tuple__"])
    if "__ndarray__" in obj:
        return np.array(obj["data"], dtype=np.dtype(obj["__ndarray__"]))
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def state_dir(checkpoint: Path) -> Path:
    """Where `save_trainer_state` writes: the checkpoint's `trainer_state/` subfolder."""
    return Path(checkpoint) / TRAINER_STATE_DIR


def has_trainer_state(checkpoint: Path) -> bool:
    """Both state files are there: in `trainer_state/` or, as earlier versions wrote them, beside the weights (or
    split between the two, where a move without hard links was interrupted)."""
    return all((state_dir(checkpoint) / n).is_file() or (Path(checkpoint) / n).is_file() for n in TRAINER_STATE_FILES)


def save_trainer_state(checkpoint: Path, state: dict) -> None:
    """Write `state` (nested dicts, lists, tuples, tensors, NumPy arrays and JSON scalars) into `checkpoint`'s
    `trainer_state/`."""
    tensors: dict[str, torch.Tensor] = {}
    doc = _encode(state, tensors)
    folder = state_dir(checkpoint)
    folder.mkdir(exist_ok=True)
    save_file(tensors, str(folder / STATE_TENSORS))
    atomic_write_json(folder / STATE_JSON, doc)


def load_trainer_state(checkpoint: Path) -> dict:
    """The state `save_trainer_state` wrote, every tensor on the CPU: the optimizer and the modules move theirs to
    the parameters' device as they load them, and RNG state must stay on the host. A checkpoint of an earlier version
    has its state files moved into `trainer_state/` first."""
    move_trainer_state_aside(checkpoint)
    folder = state_dir(checkpoint)
    doc = json.loads((folder / STATE_JSON).read_text())
    return _decode(doc, load_file(str(folder / STATE_TENSORS), device="cpu"))
