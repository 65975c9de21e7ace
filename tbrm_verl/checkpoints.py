"""verl FSDP checkpoints -> HF folders that `tbrm eval` scores and `tbrm report` compares.

verl saves ``RUN/checkpoints/global_step_N/actor/`` (per-rank sharded state dicts, ``fsdp_config.json`` and the HF
config and tokenizer in ``huggingface/``). verl's own ``FSDPModelMerger`` joins the shards; the result goes to
``RUN/checkpoint-N``, the name this suite's trainer gives its checkpoints. Each folder is written under a
temporary name and renamed when complete, so an interrupted export is redone, never half-used; a finished one
is not redone.

Each exported folder also gets ``train_config.json``: the recipe the run was prepared from (RUN/recipe.yaml) with
``"engine": "verl"``. `tbrm eval` records it as ``trained_with`` and `tbrm report` labels the checkpoint's method
from it, as for checkpoints of this suite's own trainer.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tbrm_verl.recipes import CHECKPOINT_DIR

_STEP = re.compile(r"global_step_(\d+)$")


def verl_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """{step: actor checkpoint folder} of a verl run folder."""
    root = Path(run_dir) / CHECKPOINT_DIR
    out = {}
    for d in root.glob("global_step_*"):
        m = _STEP.search(d.name)
        if m and (d / "actor" / "fsdp_config.json").is_file():
            out[int(m.group(1))] = d / "actor"
    return dict(sorted(out.items()))


def export(run_dir: str | Path, step: int | None = None) -> list[Path]:
    """Convert the run's actor checkpoints (all, or only `step`) into ``RUN/checkpoint-N`` HF folders."""
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    run_dir = Path(run_dir)
    found = verl_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"{run_dir / CHECKPOINT_DIR}: no verl checkpoints (global_step_N/actor with "
                                "fsdp_config.json); set save_every in the recipe")
    if step is not None:
        if step not in found:
            raise FileNotFoundError(f"{run_dir / CHECKPOINT_DIR}: no global_step_{step}; found steps "
                                    f"{', '.join(map(str, found))}")
        found = {step: found[step]}
    written = []
    for n, actor in found.items():
        target = run_dir / f"checkpoint-{n}"
        if (target / "config.json").is_file():
            print(f"checkpoint-{n}: already exported")
            continue
        tmp = run_dir / f".checkpoint-{n}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = ModelMergerConfig(operation="merge", backend="fsdp", local_dir=str(actor), target_dir=str(tmp),
                                hf_model_config_path=str(actor / "huggingface"))
        FSDPModelMerger(cfg).merge_and_save()
        _write_train_config(run_dir, tmp)
        tmp.rename(target)
        print(f"checkpoint-{n}: exported from {actor.relative_to(run_dir)}")
        written.append(target)
    return written


def _write_train_config(run_dir: Path, hf_dir: Path) -> None:
    import json

    from omegaconf import OmegaConf

    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        print(f"note: {recipe_file.name} not found in the run folder (not prepared by `tbrm verl`): the export "
              "has no train_config.json, so reports will not know its method")
        return
    recipe = OmegaConf.to_container(OmegaConf.load(recipe_file))
    train_config = {**{k: v for k, v in recipe.items() if k != "name"}, "recipe": recipe.get("name"), "engine": "verl"}
    (hf_dir / "train_config.json").write_text(json.dumps(train_config, indent=2) + "\n")
