"""The one registry of algorithms: adding one is adding its class to `CLASSES`. Each class declares beside its
loss its name (`TrainConfig.algorithm`), report label, paper, the rollouts per prompt it needs, whether it trains
off-policy, the settings only it reads and its own checks (tbrm/algorithm.py: `Algorithm`); `validate` derives
every algorithm-specific check from those. `tbrm.api.algorithms` serves this registry to the entry layer, and
reports name runs through `method_label`.
"""

from __future__ import annotations

import dataclasses

from baselines.grpo import GRPO
from baselines.methods import DAPO, GSPO, REINFORCEPP, RLOO, REINFORCEPPBaseline
from baselines.ppo import PPO
from tbrm.algorithm import TBRM, Algorithm
from tbrm.config import ConfigError, TrainConfig

CLASSES: tuple[type[Algorithm], ...] = (TBRM, GRPO, PPO, RLOO, REINFORCEPP, REINFORCEPPBaseline, DAPO, GSPO)


def algorithms() -> dict[str, type[Algorithm]]:
    """Every algorithm the shared loop trains, by the name `TrainConfig.algorithm` gives it."""
    return {a.name: a for a in CLASSES}


def validate(cfg: TrainConfig) -> type[Algorithm]:
    """The algorithm `cfg` names, once its settings are checked against it; ConfigError naming the first problem."""
    known = algorithms()
    cls = known.get(cfg.algorithm)
    if cls is None:
        raise ConfigError(f"unknown algorithm {cfg.algorithm!r}; choose one of {', '.join(known)}")
    problems = []
    if cfg.rollouts_per_prompt < cls.min_rollouts:
        problems.append(f"{cls.label} needs a group of rollouts per prompt: rollouts_per_prompt must be >= "
                        f"{cls.min_rollouts}; TBRM is the method that works with one rollout per prompt")
    if cfg.offline_trajectories and not cls.off_policy:
        names = ", ".join(a.name for a in CLASSES if a.off_policy)
        problems.append(f"offline_trajectories (off-policy training) is supported for algorithm={names} only: "
                        f"{cls.label} needs importance ratios to the sampling policy, which a fixed file lacks")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        owners = [a for a in CLASSES if f.name in a.own_settings]
        if owners and cls not in owners and getattr(cfg, f.name) != getattr(defaults, f.name):
            problems.append(f"{f.name} is an option of the {'/'.join(a.label for a in owners)} loss; it has no "
                            f"meaning for {cfg.algorithm}")
    problems += cls.check(cfg)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else "; ".join(problems))
    return cls


def method_label(train_config: dict) -> str | None:
    """The method of a run's train_config.json, as reports name it (e.g. "TBRM-ReVal n=4"), or None for an
    algorithm this version does not know."""
    cls = algorithms().get(train_config.get("algorithm"))
    n = train_config.get("rollouts_per_prompt")
    if cls is None or not isinstance(n, int):
        return None
    return f"{cls.method_label(train_config)} n={n}"
