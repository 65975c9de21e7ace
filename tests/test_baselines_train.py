"""The CPU recipes of the newer baselines (RLOO, REINFORCE++, DAPO, GSPO) and of TBRM with ReVal's changes train
and evaluate in the short form the other end-to-end tests use (tests/test_train_e2e.py: FAST, on the tiny Llama
with SmolLM2's tokenizer), through `tbrm.api.train` with each recipe's own method settings."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tbrm import api
from tbrm.state import load_trainer_state
from tests.test_train_e2e import FAST, _metrics

pytestmark = pytest.mark.usefixtures("no_leaked_workers")

RECIPES = {
    "cpu-rloo-n4": "rloo/clip_frac",
    "cpu-reinforcepp-n4": "reinforcepp/kl_reward_mean",
    "cpu-dapo-n4": "dapo/refill_rounds",
    "cpu-gspo-n4": "gspo/clip_frac",
    "cpu-tbrm-reval-n4": "tbrm/beta_mean",
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_new_recipes_train_and_evaluate(recipe, tiny_model_path, tmp_path):
    # FAST's 2 steps; the ReVal recipe resets its reference before step 2 (every step), DAPO refills once
    extra = {"cpu-tbrm-reval-n4": ["ref_reset_every=1"], "cpu-dapo-n4": ["dynamic_sampling_rounds=1", "overlong_buffer=3"]}
    run = tmp_path / "run"
    result = api.train(recipe, out=run, overrides=[f"model={tiny_model_path}", *FAST, *extra.get(recipe, [])],
                       progress=False)
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [0, 1, 2] and result.config["algorithm"] == api.train_config(recipe).algorithm
    for r in rows[1:]:
        assert RECIPES[recipe] in r and r["loss"] == r["loss"]  # the method's own diagnostic; the loss is no NaN
        assert "eval/heldout/accuracy" in r
    if recipe == "cpu-dapo-n4" and all(r["reward/mean"] == 0 for r in rows[1:]):
        # the random tiny model solves nothing: every group is dropped, the step samples one refill round of 4 fresh
        # prompts, still finds none and trains on its first batch, whose advantages are all 0 (and DAPO has no KL)
        assert all((r["dapo/refill_rounds"], r["dapo/refill_prompts"], r["dapo/groups_kept"]) == (1, 4, 0)
                   for r in rows[1:])
        before = load_file(f"{tiny_model_path}/model.safetensors")
        after = load_file(str(run / "checkpoint-2" / "model.safetensors"))
        assert all((before[k] == after[k]).all() for k in before)
    if recipe == "cpu-tbrm-reval-n4":
        # the reference was reset before step 2, so the checkpoint carries it for a resume
        state = load_trainer_state(run / "checkpoint-2")
        assert any(k.endswith("embed_tokens.weight") for k in state["reference"])  # the reset reference's weights
    api.evaluate(model=str(run / "checkpoint-2"), benchmarks=["math500"], limit=2, max_new_tokens=4,
                 out=tmp_path / "eval", progress=False, print_table=False)
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["benchmarks"]["math500"]["n_problems"] == 2
