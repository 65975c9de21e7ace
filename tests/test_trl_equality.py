"""DAPO's loss aggregation and GSPO's sequence-level ratio against TRL's `GRPOTrainer._compute_loss` (the `peer`
extra; TRL's GRPOConfig defaults to the DAPO loss): the same model, the same inputs, the same log-probs, the loss and
every parameter's gradient equal within 1e-6. TRL computes its log-probs with its own forward of the tiny Llama;
ours take those log-probs, so what is compared is the loss on top of them."""

from __future__ import annotations

import pytest
import torch

from baselines.grpo_loss import grpo_loss
from baselines.pg_losses import gspo_loss

trl = pytest.importorskip("trl", reason="TRL is the `peer` extra (pip install -c constraints.txt trl)")


@pytest.fixture(scope="module")
def trainer_factory(tiny_model_path, tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    def make(**loss):
        args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), use_cpu=True, report_to=[],
                          save_strategy="no", per_device_train_batch_size=4, num_generations=4,
                          max_completion_length=6, beta=0.0, **loss)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
        return GRPOTrainer(model=model, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                           processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
                           train_dataset=Dataset.from_list([{"prompt": "1+1="}] * 4))
    return make


def _inputs(vocab: int):
    g = torch.Generator().manual_seed(0)
    B, P, T = 4, 3, 6
    lengths = torch.tensor([6, 2, 4, 1])
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    return {"prompt_ids": torch.randint(3, vocab, (B, P), generator=g), "prompt_mask": torch.ones(B, P, dtype=torch.long),
            "completion_ids": torch.randint(3, vocab, (B, T), generator=g), "completion_mask": mask,
            "advantages": torch.tensor([1.0, -0.5, 2.0, -1.5]), "num_items_in_batch": mask.sum()}


def _loss_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    loss = fn()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["dapo", "gspo"])
def test_loss_and_gradients_equal_trls(method, trainer_factory):
    if method == "dapo":  # TRL's default loss: clip-higher, every token of the batch weighs the same
        tr = trainer_factory(loss_type="dapo", epsilon=0.2, epsilon_high=0.28)
    else:  # GSPO in TRL: one ratio per sequence, each sequence's tokens averaged
        tr = trainer_factory(loss_type="grpo", importance_sampling_level="sequence", epsilon=3e-4, epsilon_high=4e-4)
    model = tr.model
    model.eval()  # TRL then takes num_items_in_batch as the whole normaliser (no accumulation window)
    inputs = _inputs(model.config.vocab_size)
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        lp0, _, _ = tr._get_per_token_logps_and_entropies(model, ids, attn, 6)
    g = torch.Generator().manual_seed(1)
    scale = 0.3 if method == "dapo" else 0.01  # ratios that reach past each method's clip band
    inputs["old_per_token_logps"] = lp0 + scale * torch.randn(lp0.shape, generator=g)
    theirs, theirs_g = _loss_and_grads(model, lambda: tr._compute_loss(model, inputs))

    def ours():
        lp, _, _ = tr._get_per_token_logps_and_entropies(model, ids, attn, 6)
        mask, adv, old = inputs["completion_mask"].float(), inputs["advantages"], inputs["old_per_token_logps"]
        if method == "dapo":
            return grpo_loss(lp, old, None, adv, mask, clip_eps=0.2, clip_eps_high=0.28, kl_coef=0,
                             loss_agg="token-mean")[0]
        return gspo_loss(lp, old, adv, mask, 3e-4, 4e-4, loss_agg="seq-mean-token-mean")[0]

    mine, mine_g = _loss_and_grads(model, ours)
    torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)
    assert theirs_g.keys() == mine_g.keys() and theirs_g
    for name in theirs_g:
        torch.testing.assert_close(mine_g[name], theirs_g[name], rtol=1e-6, atol=1e-6, msg=name)
