"""The plugin reaches verl the way a Ray worker gets it (a fresh process that imports verl), and every way of it
being absent or bypassed fails loudly instead of silently training TBRM without V(s_1)."""

from __future__ import annotations

import pytest

from tests_verl.conftest import run_python

PROBE = """
import sys
import verl
from verl.trainer.ppo import core_algos
from verl.workers import engine_workers
from verl.workers.engine.base import EngineRegistry
loaded = 'tbrm_verl.plugin' in sys.modules
print('LOADED', loaded)
print('ENGINE', EngineRegistry.get_engine_cls('language_model', 'fsdp2').__name__)
print('ESTIMATOR', 'tbrm' in core_algos.ADV_ESTIMATOR_REGISTRY)
print('DISPATCH', engine_workers.ppo_loss.__module__)
"""


WORKER_LOSS = """
from functools import partial
import torch
from verl.workers import engine_workers
from verl.workers.config import FSDPActorConfig, PolicyLossConfig
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
cfg = FSDPActorConfig(strategy="fsdp2", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                      policy_loss=PolicyLossConfig(loss_mode="tbrm"))
loss_fn = partial(engine_workers.ppo_loss, config=cfg)  # what ActorRolloutRefWorker.init_model binds
B, R = 2, 3
nested = lambda t: torch.nested.as_nested_tensor(list(t), layout=torch.jagged)
data = TensorDict({"prompts": nested(torch.ones(B, 2, dtype=torch.long)),
                   "responses": nested(torch.ones(B, R, dtype=torch.long)), "response_mask": nested(torch.ones(B, R)),
                   "old_log_probs": nested(torch.zeros(B, R)), "advantages": nested(torch.ones(B, R))}, batch_size=B)
tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=B * R, global_batch_size=B, temperature=1.0)
lp = torch.nested.nested_tensor_from_jagged(torch.zeros(B * (R + 2)), torch.arange(0, B * (R + 2) + 1, R + 2))
try:
    loss_fn(model_output={"log_probs": lp}, data=data)
    print("LOSS no error")
except Exception as e:
    print("LOSS", type(e).__name__, str(e).splitlines()[0])
"""


def _probe(env: dict) -> dict:
    """A fresh process, as a Ray worker starts: import verl, report what it sees, then build and call the actor
    loss the way verl's worker does for loss_mode=tbrm."""
    proc = run_python(PROBE + WORKER_LOSS, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ")[0].isupper())


def test_entry_point_loads_plugin_in_a_fresh_process():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="verl.plugins") if e.name == "tbrm"]
    assert ep.value == "tbrm_verl.plugin"
    got = _probe({"VERL_USE_EXTERNAL_PLUGINS": "auto", "VERL_USE_EXTERNAL_MODULES": ""})
    assert {k: got[k] for k in ("LOADED", "ENGINE", "ESTIMATOR", "DISPATCH")} == {
        "LOADED": "True", "ENGINE": "TBRMFSDPEngineWithLMHead", "ESTIMATOR": "True", "DISPATCH": "tbrm_verl.plugin"}
    # loaded, but this model output has no V(s_1) (as from the stock engine): refused, not trained with V = 0
    assert got["LOSS"].startswith("RuntimeError") and "did not compute V(s_1)" in got["LOSS"]


def test_a_worker_without_the_plugin_fails_loudly_and_the_module_variable_loads_it():
    off = _probe({"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": ""})
    assert {k: off[k] for k in ("LOADED", "ENGINE", "ESTIMATOR", "DISPATCH")} == {
        "LOADED": "False", "ENGINE": "FSDPEngineWithLMHead", "ESTIMATOR": "False",
        "DISPATCH": "verl.workers.utils.losses"}
    assert "Unsupported loss mode: tbrm" in off["LOSS"]  # verl's own refusal: never a silent fallback
    on = _probe({"VERL_USE_EXTERNAL_PLUGINS": "none", "VERL_USE_EXTERNAL_MODULES": "tbrm_verl.plugin"})
    assert on["LOADED"] == "True" and on["ENGINE"] == "TBRMFSDPEngineWithLMHead"


def test_bypassed_dispatcher_hits_the_registered_guard(monkeypatch, capsys):
    """Plugin loaded but verl's own ppo_loss bound (dispatcher replaced): the 'tbrm' registry entry refuses."""
    from verl.workers import engine_workers
    from verl.workers.utils.losses import ppo_loss

    monkeypatch.setattr(engine_workers, "ppo_loss", ppo_loss)
    exec(WORKER_LOSS, {})  # the same worker code as in the fresh processes, here with the dispatcher bypassed
    out = capsys.readouterr().out
    assert out.startswith("LOSS RuntimeError") and "its loss dispatcher is not installed" in out


def test_loss_refuses_unsupported_settings_at_run_time():
    """The worker-side check, with the actor config verl builds and the micro-batch flags the engine sets."""
    from verl.workers.config import FSDPActorConfig, McoreActorConfig, PolicyLossConfig

    from tbrm_verl.plugin import TBRMSettingError, check_actor_settings

    def actor(cls=FSDPActorConfig, **kw):
        base = dict(strategy="fsdp2", rollout_n=1, ppo_micro_batch_size_per_gpu=1,
                    policy_loss=PolicyLossConfig(loss_mode="tbrm"))
        return cls(**{**base, **kw})

    check_actor_settings(actor(), temperature=1.0)  # the supported setting passes
    cases = [
        (dict(cfg=actor(), use_fused_kernels=True), "use_fused_kernels"),
        (dict(cfg=actor(ulysses_sequence_parallel_size=2)), "ulysses_sequence_parallel_size=2"),
        (dict(cfg=actor(McoreActorConfig, strategy="megatron")), "strategy 'megatron'"),
        (dict(cfg=actor(), temperature=torch_tensor([0.7, 0.7])), "temperature 0.7"),
        (dict(cfg=actor(entropy_coeff=0.001)), "entropy_coeff"),
    ]
    for kw, message in cases:
        cfg = kw.pop("cfg")
        with pytest.raises(TBRMSettingError, match=message):
            check_actor_settings(cfg, **kw)


def torch_tensor(x):
    import torch

    return torch.tensor(x)


def test_on_a_cpu_platform_verl_chooses_the_tbrm_engine_without_engine_overrides():
    """With the CPU test platform (tests_verl/verl_cpu_platform.py: device and vendor "cpu"), verl's engine
    registry returns the TBRM engine because install() registers it for (cpu, cpu), as for (cuda, nvidia) on a
    GPU: no VERL_ENGINE_DEVICE/VERL_ENGINE_VENDOR override. Without the plugin it is verl's stock engine."""
    env = {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": "tests_verl.verl_cpu_platform",
           "VERL_ENGINE_DEVICE": "", "VERL_ENGINE_VENDOR": ""}
    on = _probe({**env, "VERL_USE_EXTERNAL_PLUGINS": "auto"})
    assert on["LOADED"] == "True" and on["ENGINE"] == "TBRMFSDPEngineWithLMHead"
    off = _probe({**env, "VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert off["LOADED"] == "False" and off["ENGINE"] == "FSDPEngineWithLMHead"
