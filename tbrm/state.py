"""What a checkpoint holds besides the model: optimizer, scheduler, algorithm and random-number-generator state.

RNG state is captured and restored on the host whatever device trains: `torch.set_rng_state` and
`torch.cuda.set_rng_state` both take a CPU ByteTensor, so the state is never moved to the training device. On CUDA
the training device's generator is saved and restored too, since sampling and dropout draw from it there.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


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


def save_trainer_state(checkpoint: Path, state: dict) -> None:
    torch.save(state, Path(checkpoint) / STATE_FILE)


def load_trainer_state(checkpoint: Path) -> dict:
    """The state `save_trainer_state` wrote, every tensor on the CPU: the optimizer and the modules move theirs to
    the parameters' device as they load them, and RNG state must stay on the host."""
    return torch.load(Path(checkpoint) / STATE_FILE, weights_only=False, map_location="cpu")
