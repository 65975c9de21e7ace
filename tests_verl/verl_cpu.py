"""Test-only: the settings that run verl 0.9.1's own trainer on a CPU-only machine (``tbrm verl RECIPE --launch``
with these as ``--launch-override`` and ``cpu_env()`` as its environment). The CPU platform itself is
``tests_verl/verl_cpu_platform.py``, which verl imports through ``VERL_USE_EXTERNAL_MODULES``; importing this
module has no side effects. What the CPU run proves and what it does not: docs/verl-plugin.md, "verl's trainer on
CPU".
"""

from __future__ import annotations

import os

MODULE = "tests_verl.verl_cpu_platform"  # the CPU platform, imported by verl in every process
PLUGIN = "tbrm_verl.plugin"


def cpu_env(repo_root: str) -> dict[str, str]:
    """Environment for a ``tbrm verl ... --launch`` on CPU (the driver; Ray workers inherit it)."""
    return {
        "VERL_PLATFORM": "cpu",
        "VERL_USE_EXTERNAL_MODULES": f"{MODULE},{PLUGIN}",
        "PYTHONPATH": os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH", "")) if p),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_DEDUP_LOGS": "0",
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache; the tiny model needs a few MB
        "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "TOKENIZERS_PARALLELISM": "false",
        # Ray kills workers when the whole machine is above 95% memory; on a shared CI box that is other jobs'
        # memory, not this run's (a few GB), so its monitor is off and the kernel's OOM handling applies
        "RAY_memory_monitor_refresh_ms": "0",
    }


# Hydra overrides added at launch on CPU; each is something a GPU run does not need.
CPU_OVERRIDES = [
    "trainer.device=cpu",
    # verl's pools ask Ray for GPUs: fake one; its actors (trainer, workers, rollout, reward loop, transfer queue)
    # each take a logical CPU, more than 2 cores' worth
    "+ray_kwargs.ray_init.num_gpus=1", "ray_kwargs.ray_init.num_cpus=16",
    "+ray_kwargs.ray_init.include_dashboard=false",  # its processes take memory and CPU a CI box is short of
    # the Ray workers import this module too (the written config lists the plugin only)
    f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES='{MODULE},{PLUGIN}'",
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM=cpu",
    # verl's default is flash_attention_2 (CUDA only)
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "+critic.model.override_config.attn_implementation=sdpa",
    # vLLM-CPU: no sleep mode, no CUDA graphs, no cache freeing; it loads the real weights (verl's default load
    # format "dummy" relies on the first weight sync, which vLLM-CPU receives through reload_weights anyway)
    "+actor_rollout_ref.rollout.enable_sleep_mode=false", "actor_rollout_ref.rollout.enforce_eager=true",
    "actor_rollout_ref.rollout.free_cache_engine=false", "actor_rollout_ref.rollout.load_format=auto",
    # one agent-loop worker, one reward worker, no data-loader workers, one transfer-queue storage unit (with the
    # default 8 storage actors the V1 trainer hung on 2 cores)
    "actor_rollout_ref.rollout.agent.num_workers=1", "reward.num_workers=1", "data.dataloader_num_workers=0",
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
]
