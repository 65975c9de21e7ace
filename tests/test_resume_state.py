"""A checkpoint's trainer state (tbrm/state.py): RNG state restores exactly and stays on the host; the state sits in
the checkpoint's `trainer_state/` subfolder, out of every model loader's way, and an earlier version's checkpoint
(state beside the weights) is moved there by whatever reads it first, crash- and race-safe."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evals.models import fingerprint, move_trainer_state_aside
from tbrm.state import capture_rng, has_trainer_state, load_trainer_state, restore_rng, save_trainer_state


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
    assert not list(tmp_path.rglob("*.pt")) and (tmp_path / "trainer_state" / "trainer_state.json").exists()
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


STATE = {"step": 3, "optimizer": {"state": {0: {"exp_avg": torch.arange(6.0)}}}, "rng": (1, [2, 3])}


def _checkpoint(folder: Path) -> Path:
    """A checkpoint folder as `Trainer.save` writes it, with a stand-in model (its files' bytes do not matter)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"weights" * 100)
    save_trainer_state(folder, STATE)
    return folder


def _as_earlier_versions_wrote(folder: Path) -> Path:
    """Move the state files beside the weights, where versions before `trainer_state/` wrote them."""
    for f in (folder / "trainer_state").iterdir():
        os.replace(f, folder / f.name)
    (folder / "trainer_state").rmdir()
    return folder


def _tidy(folder: Path) -> bool:
    """The same state read back, and then only the model at the top level and both state files in trainer_state/."""
    return (_same(load_trainer_state(folder), STATE)
            and [p.name for p in folder.glob("*.safetensors")] == ["model.safetensors"]
            and sorted(p.name for p in (folder / "trainer_state").iterdir()) == ["trainer_state.json",
                                                                                  "trainer_state.safetensors"])


def test_the_state_is_kept_out_of_the_model_folder_top_level(tmp_path):
    """vLLM loads every top-level *.safetensors of a folder without an index file as weights, so the optimizer
    state beside model.safetensors failed every vLLM load of a checkpoint ("no module or parameter named 't0'")."""
    ckpt = _checkpoint(tmp_path / "checkpoint-3")
    assert sorted(p.name for p in ckpt.iterdir()) == ["config.json", "model.safetensors", "trainer_state"]
    assert has_trainer_state(ckpt) and _tidy(ckpt)


def test_an_earlier_versions_checkpoint_is_moved_on_first_read_without_copying(tmp_path):
    ckpt = _as_earlier_versions_wrote(_checkpoint(tmp_path / "checkpoint-3"))
    before = fingerprint(str(ckpt))
    inode = (ckpt / "trainer_state.safetensors").stat().st_ino
    assert has_trainer_state(ckpt)  # complete: a resume finds it
    assert _tidy(ckpt)  # load_trainer_state moved the files first
    assert (ckpt / "trainer_state" / "trainer_state.safetensors").stat().st_ino == inode  # renamed, not copied
    assert [p.name for p in ckpt.iterdir() if p.name.startswith(".")] == []
    assert fingerprint(str(ckpt)) == before  # the same model: earlier evaluations of it still resume
    assert move_trainer_state_aside(ckpt) is False  # nothing left to move


def _interrupted(folder: Path, where: str) -> None:
    """The layouts an interrupted move can leave behind (the `move_trainer_state_aside` steps)."""
    names = ["trainer_state.json", "trainer_state.safetensors"]
    if where == "links made, not renamed":
        (folder / ".trainer_state-dead").mkdir()
        for n in names:
            os.link(folder / n, folder / ".trainer_state-dead" / n)
    elif where == "renamed, names not removed":
        (folder / "trainer_state").mkdir()
        for n in names:
            os.link(folder / n, folder / "trainer_state" / n)
    elif where == "one file renamed (no hard links)":
        (folder / "trainer_state").mkdir()
        os.replace(folder / names[0], folder / "trainer_state" / names[0])
    elif where == "renamed, names copied back":  # e.g. a copy of the folder made mid-move (`cp -r`: no links)
        shutil.copytree(folder, folder.with_name("copy"))
        (folder / "trainer_state").mkdir()
        for n in names:
            os.replace(folder / n, folder / "trainer_state" / n)
            shutil.copy2(folder.with_name("copy") / n, folder / n)


@pytest.mark.parametrize("where", ["links made, not renamed", "renamed, names not removed",
                                   "one file renamed (no hard links)", "renamed, names copied back"])
def test_an_interrupted_move_still_counts_as_complete_and_the_next_read_finishes_it(tmp_path, where):
    ckpt = _as_earlier_versions_wrote(_checkpoint(tmp_path / "checkpoint-3"))
    _interrupted(ckpt, where)
    assert has_trainer_state(ckpt)
    assert _tidy(ckpt)


def _move(folder: str) -> None:
    move_trainer_state_aside(folder)


def test_processes_moving_the_same_checkpoint_at_once_leave_it_whole(tmp_path):
    """E.g. `tbrm reproduce --jobs 2` evaluating one old checkpoint on two benchmarks at once: each process's
    `resolve_model` moves the state; whichever order their steps interleave in, no process fails and none is lost."""
    folders = [str(_as_earlier_versions_wrote(_checkpoint(tmp_path / f"checkpoint-{i}"))) for i in range(8)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_move, [f for f in folders for _ in range(4)], chunksize=1)
    assert all(_tidy(Path(f)) for f in folders)
    assert not [p for f in folders for p in Path(f).iterdir() if p.name.startswith(".")]


def test_vllm_says_what_to_do_about_state_it_could_not_move(tmp_path):
    """A folder the user may not write keeps an earlier version's state beside the weights: engine auto falls
    back to transformers, and --engine vllm refuses, each naming the file and the fix."""
    from evals.engines.base import vllm_version
    from evals.engines.vllm_engine import unsupported_reason

    if vllm_version() is None:
        pytest.skip("vLLM not installed")
    ckpt = _as_earlier_versions_wrote(_checkpoint(tmp_path / "checkpoint-3"))
    reason = unsupported_reason(str(ckpt), "cpu")
    assert str(ckpt / "trainer_state.json") in reason and "would load as weights" in reason
    assert str(ckpt / "trainer_state") in reason and "make the folder writable" in reason
    move_trainer_state_aside(ckpt)
    assert unsupported_reason(str(ckpt), "cpu") is None
