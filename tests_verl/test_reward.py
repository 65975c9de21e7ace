"""One reward: verl's own reward manager, configured as `tbrm verl` configures it, scores responses exactly as this
suite's verifier (the grader of `tbrm eval`) judges them, for every algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tbrm.config import load_config

CASES = [  # (response, gold): equivalent forms, a wrong answer, an answer with no box, nothing at all
    ("Adding up gives \\boxed{\\frac{1}{2}}.", "0.5"),
    ("The answer is \\boxed{3}.", "4"),
    ("so x = 12", "12"),
    ("I am not sure.", "7"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
]


@pytest.mark.parametrize("recipe", ["paper-tbrm-n1-qwen1.5b", "paper-grpo-n4-qwen1.5b", "paper-ppo-n1-qwen1.5b"])
def test_verls_reward_manager_scores_with_this_suites_verifier(recipe, tiny_chat_model_dir):
    from transformers import AutoTokenizer

    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    from evals.grading.verifier import judge
    from tbrm_verl.recipes import compose, verl_overrides

    cfg = load_config(recipe, ["reward_correct=2.0", "reward_wrong=-0.5"])
    config = compose(verl_overrides(cfg, recipe))
    tok = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    manager = load_reward_manager(config, tok)
    assert type(manager).__name__ == "NaiveRewardManager"

    prompt = tok("Q:", return_tensors="pt").input_ids[0]
    got = []
    for response, gold in CASES:
        ids = tok(response, return_tensors="pt", add_special_tokens=False).input_ids[0]
        responses = torch.cat([ids, torch.full((4,), tok.pad_token_id)])  # right padding, as rollouts have
        mask = torch.cat([torch.ones(len(prompt) + len(ids)), torch.zeros(4)]).long()
        data = DataProto.from_dict(
            tensors={"prompts": prompt[None], "responses": responses[None], "attention_mask": mask[None]},
            non_tensors={"data_source": np.array(["dapo"], dtype=object),
                         "reward_model": np.array([{"style": "rule", "ground_truth": gold}], dtype=object),
                         "extra_info": np.array([{}], dtype=object)})
        got.append(manager.loop.run_until_complete(manager.run_single(data)))  # the loop verl gave it
    for (response, gold), out in zip(CASES, got):
        correct = judge(response, gold).correct
        assert out["reward_score"] == (2.0 if correct else -0.5), (response, gold, out)
        assert out["reward_extra_info"]["acc"] == float(correct)
    accs = [o["reward_extra_info"]["acc"] for o in got]
    assert accs[0] == 1.0 and accs[1] == 0.0 and accs[3] == 0.0  # both verdicts occur: the check can fail
