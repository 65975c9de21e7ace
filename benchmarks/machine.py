"""What a benchmark's figures were measured on: the CPU model and the instruction-set extensions that change CPU
speed here (AVX-512 bf16, AMX), the cores this process may use and the memory. The CPU changes between sessions
(DEVELOPERS.md: Zen 3, Zen 4 with avx512_bf16, Intel with AMX), so every absolute figure names its machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def describe() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = lambda name: next((line.split(":", 1)[1].strip() for line in info.splitlines()  # noqa: E731
                               if line.startswith(name)), "")
    flags = set(field("flags").split())
    # family/model tell the generation where the name does not ("AMD EPYC": family 25 model 17 is Zen 4)
    return {"cpu": field("model name") or platform.processor(),
            "cpu_family_model": f"{field('cpu family')}/{field('model')}", "cpu_flags": [f for f in FLAGS if f in flags],
            "cores": len(os.sched_getaffinity(0)),
            "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version()}


def line(m: dict) -> str:
    """'AMD EPYC, family/model 25/17, avx512f avx512_bf16, 2 cores, 23.5 GiB'"""
    flags = f", {' '.join(m['cpu_flags'])}" if m.get("cpu_flags") else ""
    return (f"{m.get('cpu') or 'unknown CPU'}, family/model {m.get('cpu_family_model', '?')}{flags}, "
            f"{m['cores']} cores, {m['ram_gb']} GiB")
