"""Test-only: a CPU platform for verl 0.9.1, so that its own trainer (``python -m verl.trainer.main_ppo``) runs on
a CPU-only machine (the settings and environment that go with it: ``tests_verl/verl_cpu.py``).

verl 0.9.1 has no CPU platform. Importing this module adds one, without editing a verl file; verl imports it in
every process (driver, Ray workers) through its ``VERL_USE_EXTERNAL_MODULES`` hook, listed before the TBRM plugin
(``cpu_env()``), with ``VERL_PLATFORM=cpu``. What it changes, and why (verl 0.9.1 file:line):

- a ``cpu`` platform (``plugin/platform/platform_manager.py:114`` otherwise falls back to nvidia): device ``cpu``,
  vendor ``cpu``, gloo; its Ray resource is "GPU" so that verl's resource pools (``single_controller/ray/base.py``
  asks for GPUs) are placed on fake Ray GPUs (``+ray_kwargs.ray_init.num_gpus``); no CUDA IPC (weights reach the
  rollout through shared memory);
- verl's stock FSDP engines registered for device ``cpu`` (``workers/engine/fsdp/transformer_impl.py`` registers
  them for cuda and npu only). The TBRM plugin's ``install()`` registers its own engine for (cpu, cpu), which
  verl's registry prefers, as it prefers (cuda, nvidia) on a GPU;
- the backend string ``cpu:gloo,cpu:gloo`` that ``utils/distributed.py:89`` builds on CPU (torch refuses it) -> gloo;
- the critic's value model loaded with sdpa attention (verl hard-codes FlashAttention 2 for it);
- no pinned memory in the FSDP2 reference's forced ``CPUOffloadPolicy(pin_memory=True)`` (pinning needs an
  accelerator);
- the rollout's weight update through vLLM's ``reload_weights``: vLLM-CPU repacks linear weights after loading and
  drops their ``weight_loader``, so verl's ``model.load_weights`` fails there;
- ``importlib.metadata.version("vllm")`` answers for the ``vllm-cpu`` distribution (verl's version check,
  ``third_party/vllm/__init__.py:31``, looks for a distribution named vllm).

With ``TBRM_VERL_CPU_RECORD=DIR`` it also records every actor-loss call under DIR (``_record_losses``).
What the CPU run proves and what it does not: docs/verl-plugin.md, "verl's trainer on CPU".
"""

from __future__ import annotations

import contextlib
import importlib.metadata as _md
import os
import types


def _vllm_dist_version() -> None:
    orig = _md.version
    if getattr(orig, "_verl_cpu", False):
        return

    def version(name):
        try:
            return orig(name)
        except _md.PackageNotFoundError:
            if name.lower() == "vllm":
                return orig("vllm-cpu")
            raise

    version._verl_cpu = True
    _md.version = version


_vllm_dist_version()  # before anything imports verl.third_party.vllm

import torch  # noqa: E402

from verl.plugin.platform.platform_base import PlatformBase  # noqa: E402
from verl.plugin.platform.platform_manager import PlatformRegistry  # noqa: E402


class _CPUDeviceModule(types.ModuleType):
    """The ``torch.cuda``-like namespace verl calls through ``get_torch_device()``: ``torch.cpu`` where it has the
    name, CPU equivalents for seeds and memory, no-ops for the cache and statistics calls."""

    def __init__(self):
        super().__init__("verl_cpu_device")

    def __getattr__(self, name):
        if hasattr(torch.cpu, name):
            return getattr(torch.cpu, name)
        if name == "get_rng_state":
            return lambda *a, **k: torch.get_rng_state()
        if name == "set_rng_state":
            return lambda state, *a, **k: torch.set_rng_state(state)
        if name in ("manual_seed", "manual_seed_all"):
            return lambda seed: torch.manual_seed(seed)
        if name == "mem_get_info":
            def mem_get_info(*a, **k):
                import psutil

                vm = psutil.virtual_memory()
                return vm.available, vm.total
            return mem_get_info
        if name == "get_device_name":
            return lambda *a, **k: "cpu"
        return lambda *a, **k: 0  # empty_cache, memory_allocated, reset_peak_memory_stats, ...


_DEVICE = _CPUDeviceModule()


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    device_name = property(lambda self: "cpu")
    vendor_name = property(lambda self: "cpu")
    device_module = property(lambda self: _DEVICE)

    def is_available(self):
        return True

    def is_platform_available(self, use_smi_check=False):
        return True

    def current_device(self):
        return "cpu"

    def device_count(self):
        return 1

    def set_device(self, device_index):
        pass

    def synchronize(self, device_index=None):
        pass

    def manual_seed(self, seed):
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    def set_allocator_settings(self, settings):
        pass

    def empty_cache(self):
        pass

    def get_device_capability(self, device_index=0):
        return None, None

    def communication_backend_name(self):
        return "gloo"

    def visible_devices_envvar(self):
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg):
        yield

    def profiler_start(self):
        pass

    def profiler_stop(self):
        pass

    def ray_resource_name(self):
        return "GPU"

    def ray_resource_options(self, num_gpus):
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self):
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self):
        return False

    def rollout_env_vars(self):
        return {}

    def get_collective_module(self):
        return None

    def cudart(self):
        return None


def _register_engines() -> None:
    from verl.workers.engine.base import EngineRegistry
    from verl.workers.engine.fsdp import transformer_impl as t

    for model_type, cls in (("language_model", t.FSDPEngineWithLMHead), ("value_model", t.FSDPEngineWithValueHead)):
        if "cpu" not in EngineRegistry._engines.get(model_type, {}).get("fsdp2", {}):
            EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device="cpu")(cls)


def _gloo_backend_string() -> None:
    import torch.distributed as dist

    orig = dist.init_process_group
    if getattr(orig, "_verl_cpu", False):
        return

    def init_process_group(*args, **kwargs):
        if kwargs.get("backend") == "cpu:gloo,cpu:gloo":
            kwargs["backend"] = "gloo"
        return orig(*args, **kwargs)

    init_process_group._verl_cpu = True
    dist.init_process_group = init_process_group


def _offload_without_pinning() -> None:
    from verl.workers.engine.fsdp import transformer_impl as t

    base = t.CPUOffloadPolicy
    if base is None or getattr(base, "_verl_cpu", False):
        return

    class CPUOffloadPolicyNoPin(base):
        _verl_cpu = True

        def __init__(self, pin_memory=False):
            super().__init__(pin_memory=False)

    t.CPUOffloadPolicy = CPUOffloadPolicyNoPin


def _vllm_reload_weights() -> None:
    try:
        from verl.workers.rollout.vllm_rollout import utils as vu
    except ImportError:  # a process without vLLM
        return
    ext = vu.vLLMColocateWorkerExtension
    orig = ext._update_weights
    if getattr(orig, "_verl_cpu", False):
        return

    def _update_weights(self, weights, peft_config=None, base_sync_done=False, *args, **kwargs):
        if peft_config:
            return orig(self, weights, peft_config, base_sync_done, *args, **kwargs)
        # the tensors are views of a shared buffer verl reuses for the next bucket: copy them
        self.reload_weights(weights_iterator=iter([(n, t.clone()) for n, t in weights]))

    _update_weights._verl_cpu = True
    ext._update_weights = _update_weights


def _value_model_with_sdpa() -> None:
    """verl loads the critic's value model with attn_implementation="flash_attention_2" hard-coded
    (utils/model.py:645, ignoring critic.model.override_config): load it with sdpa, as the actor is."""
    from transformers import AutoModelForTokenClassification

    from verl.utils import model as vm

    if getattr(vm.load_valuehead_model, "_verl_cpu", False):
        return

    def load_valuehead_model(local_path, torch_dtype, model_config, trust_remote_code):
        return AutoModelForTokenClassification.from_pretrained(
            pretrained_model_name_or_path=local_path, torch_dtype=torch_dtype, config=model_config,
            attn_implementation="sdpa", trust_remote_code=trust_remote_code)

    load_valuehead_model._verl_cpu = True
    vm.load_valuehead_model = load_valuehead_model


_register_engines()
_value_model_with_sdpa()
_gloo_backend_string()
_offload_without_pinning()
_vllm_reload_weights()


def _record_losses(out_dir: str) -> None:
    """Save every actor-loss call (the micro-batch, the engine's outputs, the loss and its metrics) under
    `out_dir`, one file per call in this process: the end-to-end test recomputes TBRM's loss from them."""
    import itertools
    import time

    from verl.workers import engine_workers

    import tbrm_verl.plugin  # noqa: F401  (installs the dispatcher this wraps)

    loss_fn = engine_workers.ppo_loss
    if getattr(loss_fn, "_verl_cpu", False):
        return
    calls = itertools.count()

    def as_plain(value):
        if isinstance(value, torch.Tensor):
            value = value.detach()
            return [t.clone() for t in value.unbind()] if value.is_nested else value.clone()
        return None

    def recording_loss(config, model_output, data, dp_group=None):
        loss, metrics = loss_fn(config, model_output=model_output, data=data, dp_group=dp_group)
        record = {
            "order": time.time_ns(),
            "loss_mode": config.policy_loss.loss_mode,
            "data": {k: as_plain(data[k]) for k in data.keys() if as_plain(data[k]) is not None},
            "model_output": {k: as_plain(v) for k, v in model_output.items() if as_plain(v) is not None},
            "loss": float(loss.detach()),
            "metrics": {k: float(getattr(m, "value", m)) for k, m in metrics.items()
                        if hasattr(getattr(m, "value", m), "__float__")},
        }
        os.makedirs(out_dir, exist_ok=True)
        torch.save(record, os.path.join(out_dir, f"loss-{os.getpid()}-{next(calls):04d}.pt"))
        return loss, metrics

    recording_loss._verl_cpu = True
    engine_workers.ppo_loss = recording_loss


if os.environ.get("TBRM_VERL_CPU_RECORD"):
    _record_losses(os.environ["TBRM_VERL_CPU_RECORD"])
