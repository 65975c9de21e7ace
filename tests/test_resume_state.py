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


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_optimizer_scheduler_and_critic_state_round_trip_without_pickle(tmp_path):
    """What a PPO checkpoint holds (AdamW state keyed by parameter index, betas tuples, 0-dim step tensors, a
    LambdaLR, a module's weights, RNG tuples and arrays) comes back equal in value and type, and training on from
    it takes the very step the uninterrupted optimizer takes."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 3))
    for _ in range(2):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step(), sched.step(), opt.zero_grad()
    state = {"step": 2, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "algorithm": {"critic": model.state_dict(), "critic_opt": opt.state_dict()},
             "rng": capture_rng(torch.device("cpu")), "loss": float("nan")}
    save_trainer_state(tmp_path, state)
    assert not list(tmp_path.glob("*.pt")) and (tmp_path / "trainer_state.json").exists()
    back = load_trainer_state(tmp_path)
    nan = back.pop("loss")
    assert nan != nan and _same({k: v for k, v in state.items() if k != "loss"}, back)

    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(back["algorithm"]["critic"])
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1e-2, fused=True)
    twin_opt.load_state_dict(back["optimizer"])
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (twin, twin_opt)):
        m(x).pow(2).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


def test_unstorable_state_is_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match="without pickle"):
        save_trainer_state(tmp_path, {"scheduler": {"fn": lambda s: s}})
