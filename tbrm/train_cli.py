"""`tbrm train` and `tbrm recipes`: flags in, `tbrm.api.train` out.

The registry of algorithms (`tbrm.api.algorithms`, `tbrm.api.make_algorithm`) lives in the entry layer: the
training core (`tbrm.trainer`, `tbrm.algorithm`) sits below `baselines/`, and the loop receives the class of the
algorithm to train instead of looking it up.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train with TBRM, GRPO or PPO on the shared RL loop",
                       description="Train from a recipe (tbrm/recipes/NAME.yaml or a YAML path) with key=value "
                                   "overrides, e.g. `tbrm train --recipe cpu-tbrm-n1 --out runs/t1 steps=40`. "
                                   "Rerun with the same --out to resume after an interruption.")
    p.add_argument("--recipe", help="recipe name or YAML path (default: the dataclass defaults)")
    p.add_argument("--out", required=True, help="run directory (created, or resumed if it holds checkpoints)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", help="config overrides as key=value (see tbrm/config.py)")
    p.set_defaults(func=_run_train)
    r = sub.add_parser("recipes", help="list the bundled training recipes")
    r.set_defaults(func=_list_recipes)


def _run_train(a) -> int:
    from tbrm import api

    if a.print_config:
        import yaml

        from tbrm.config import to_dict

        print(yaml.safe_dump(to_dict(api.train_config(a.recipe, a.overrides)), sort_keys=False))
        return 0
    result = api.train(a.recipe, out=a.out, overrides=a.overrides, progress=not a.no_progress)  # validates first
    last = result.metrics[-1] if result.metrics else {}
    evals = {k: round(v, 4) for k, v in last.items() if k.startswith("eval/") and k.endswith("/accuracy")}
    print(f"trained {result.config['algorithm']} for {last.get('step', 0)} steps; final held-out {evals}; "
          f"checkpoints and metrics in {Path(a.out)}")
    return 0


def _list_recipes(a) -> int:
    import yaml

    from tbrm.config import RECIPES_DIR

    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        desc = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        print(f"{path.stem:24s} {desc}")
    return 0
