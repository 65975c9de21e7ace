"""A checkpoint's trainer state (tbrm/state.py): RNG state restores exactly and stays on the host."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tbrm.state import capture_rng, load_trainer_state, restore_rng, save_trainer_state


def _draws(device: torch.device) -> tuple:
    cuda = torch.rand(3, device=device).tolist() if device.type == "cuda" else None
    return torch.rand(3).tolist(), random.random(), float(np.random.rand()), cuda


DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_saved_rng_state_restores_the_same_draws_from_host_tensors(tmp_path, device):
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    if device.type == "cuda":
        torch.cuda.manual_seed(1)
    save_trainer_state(tmp_path, {"rng": capture_rng(device)})
    expected = _draws(device)
    _draws(device)  # move every generator on
    rng = load_trainer_state(tmp_path)["rng"]
    assert set(rng) == {"torch", "python", "numpy"} | ({"cuda"} if device.type == "cuda" else set())
    for key in ("torch", "cuda"):
        if key in rng:  # what torch.set_rng_state / torch.cuda.set_rng_state accept: a CPU ByteTensor
            assert rng[key].device.type == "cpu" and rng[key].dtype == torch.uint8
    restore_rng(rng, device)
    assert _draws(device) == expected
