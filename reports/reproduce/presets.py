"""The CPU presets of `tbrm reproduce`: every per-stage setting of each, in one place. A new preset is one entry of
`PRESETS` (its `about` line is its `--help` text; `--preset` takes every key)."""

from __future__ import annotations

from typing import Any

# Every per-stage setting of the CPU presets, in one place. `steps` and `prompts_per_step` set the prompt budget
# (equal for every method); `train_overrides` apply to every method (key=value, as for `tbrm train`). The held-out
# problems come from the recipes' arithmetic task with `heldout_size`; the final evaluation uses the first
# `heldout_problems` of them. Sizes of `cpu` are chosen to finish within 45 minutes on 2 cores (measured in
# benchmarks/results/reproduce_cpu.json). `cpu-full` trains the same runs twice as long: every training setting
# but `steps` is shared, so `--preset cpu-full --out DIR` on a DIR that holds a finished `cpu` run continues its
# trainings from their last checkpoint (20 -> 40 steps, same data order and optimizer state) instead of starting
# over, and evaluates on more held-out problems and a larger MATH500 slice (in their own eval folders).
# keep_checkpoints=3: after cpu-full's step 40 the cpu run's checkpoint-20 (evaluated by `cpu`) is still there.
_CPU_TRAIN = ["prompts_per_step=8", "eval_problems=50", "eval_every=10", "save_every=10", "keep_checkpoints=3"]
# Primary comparisons of the CPU presets, declared before any run: the paper's two headline claims (TBRM n=1 matches
# PPO n=1; TBRM n=4 beats GRPO n=4). Holm's correction runs over these alone; every other comparison in a report is
# exploratory. A comparison whose method this run does not train is dropped.
_PRIMARIES = [["TBRM n=1", "PPO n=1"], ["TBRM n=4", "GRPO n=4"]]
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "about": "train TBRM n=1/n=4, TBRM-Vref n=1 (ReVal's fix), GRPO n=4 and PPO n=1 on the bundled "
                 "SmolLM2-135M-Instruct with an equal prompt budget, evaluate base + final checkpoints on held-out "
                 "arithmetic and a MATH500 slice, and write DIR/report-cpu (30-40 min on 2 cores)",
        "model": "smollm2",
        # TBRM-Vref: TBRM with ReVal's fix (arXiv 2603.23355, Prop. 1), the one published critique of TBRM
        "recipes": ["cpu-tbrm-n1", "cpu-tbrm-vref-n1", "cpu-tbrm-n4", "cpu-grpo-n4", "cpu-ppo-n1"],
        "primaries": _PRIMARIES,
        "steps": 20,
        "train_overrides": _CPU_TRAIN,  # the trainer's own held-out curve: 50 problems every 10 steps
        "heldout_size": 200,
        "heldout_problems": 100,  # final held-out evaluation (tbrm eval --data-file), <= heldout_size
        "heldout_max_new_tokens": 48,  # = the recipes' max_new_tokens
        "math500_limit": 10,  # 0 skips MATH500 (a sanity check at this scale: ~2 min per model for 20)
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
        "seeds": 1,
    },
    "cpu-full": {
        "about": "the same trained twice as long and evaluated on more problems; on a DIR holding a finished cpu run "
                 "it continues those trainings instead of starting over; 3 seeds per method",
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1", "cpu-tbrm-vref-n1", "cpu-tbrm-n4", "cpu-grpo-n4", "cpu-ppo-n1"],
        "primaries": _PRIMARIES,
        "steps": 40,
        "train_overrides": _CPU_TRAIN,
        "heldout_size": 200,
        "heldout_problems": 200,
        "heldout_max_new_tokens": 48,
        "math500_limit": 50,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
        "seeds": 3,  # one run per method is an anecdote: two runs of one command moved accuracy by 14 points
    },
    # Off-policy TBRM (the paper's Sec. 4 claim, never run there): per seed, sample the training prompts ONCE with
    # the base model at each temperature in `offpolicy_temperatures` (the recipe's own, and another policy), then
    # train TBRM purely from each fixed file (no new rollouts), beside on-policy TBRM with the same gradient steps
    # and batch size; base and every final checkpoint on the same held-out problems; curves of residual and
    # held-out accuracy over training.
    "offpolicy": {
        "about": "TBRM trained purely from fixed trajectory files sampled once by the base model at two "
                 "temperatures, against on-policy TBRM at equal gradient steps and the base model, 3 seeds",
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1"],
        "steps": 20,
        "train_overrides": _CPU_TRAIN,
        "heldout_size": 200,
        "heldout_problems": 100,
        "heldout_max_new_tokens": 48,
        "math500_limit": 0,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
        "seeds": 3,
        "offpolicy_temperatures": [0.7, 1.0],
    },
    # The comparison sized to decide (issue 19). Primary comparisons, declared before the run: the paper's two
    # headline claims, on the held-out benchmark. Size: the committed 3-seed run had a pooled per-seed SD of about
    # 8 points (TBRM n=1 about 13) on 100 problems, of which ~5 points were evaluation noise; on 500 problems that
    # noise falls to ~2 points. For a 10-point difference at 80% power with Welch's t at alpha 0.05/2 (Holm over 2
    # primaries) that asks for ~10-15 seeds per method, planned as looks at 5, 10, 15 and 20. Seed k of every method
    # draws the same prompts in the same order (PromptSource is seeded by k alone), so seeds pair by index.
    # The trainer's own held-out curve is off (every seed's step-0 score is the base model's, evaluated once), and
    # each run keeps only its final weights (final_state=weights, keep_checkpoints=1): 40 runs x 1.6 GB of
    # optimizer state would fill a small disk. MATH500 is left out (a slice decides nothing at this scale).
    "powered": {
        "about": "the comparison sized to decide the paper's two headline claims: seeds added in planned blocks "
                 "of 5 up to 20 per method, stopping once every pre-declared primary is decided "
                 "(group-sequential), 500 held-out problems",
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1", "cpu-ppo-n1", "cpu-tbrm-n4", "cpu-grpo-n4"],
        "primaries": _PRIMARIES,
        "margin": 5.0,  # points: a primary is "equivalent" when TOST puts the difference inside +-margin
        "steps": 20,
        "train_overrides": ["prompts_per_step=8", "evaluate=false", "save_every=5", "keep_checkpoints=1",
                            "final_state=weights"],
        # The training task (1-2 digit additions) reserves only 401 of its 4,150 problems for evaluation
        # (tbrm/tasks.py: HELDOUT_FRACTION); 500 need 3-digit additions too. They come from the same hash-reserved pool,
        # so no training stream ever draws one, and the round-robin over digit counts makes the 500 about half
        # 2-digit (in distribution) and half 3-digit (harder, a test of generalisation).
        "heldout_digits": [1, 2, 3],
        "heldout_size": 500,
        "heldout_problems": 500,
        "heldout_max_new_tokens": 48,
        "math500_limit": 0,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 128,
        # group-sequential (issue 25): seeds per method at each planned look; the report after each block decides
        # the primaries at O'Brien-Fleming-type boundaries, and the run stops once every primary is decided
        "blocks": [5, 10, 15, 20],
        "seeds": 20,
    },
}

# TBRM against the baselines the field uses now (issue 26): TBRM n=4 and TBRM with ReVal's changes n=4 beside
# every n=4 baseline (GRPO, RLOO, REINFORCE++, DAPO, GSPO), with the powered preset's statistics: primaries
# declared before any run (TBRM n=4 vs DAPO n=4: does TBRM beat TRL's default loss; TBRM-ReVal n=4 vs TBRM n=4:
# do ReVal's changes help), 500 held-out problems, only final weights kept. 3 seeds by default: an exploratory
# run that can only show differences far larger than the powered preset's 12.7-point MDE; --seeds 10 or more
# to decide.
PRESETS["baselines"] = {
    **PRESETS["powered"],
    "about": "TBRM n=4 and TBRM-ReVal n=4 against GRPO, RLOO, REINFORCE++, DAPO and GSPO n=4 with the powered "
             "preset's statistics; primaries TBRM vs DAPO and TBRM-ReVal vs TBRM (3 seeds: exploratory)",
    "recipes": ["cpu-tbrm-n4", "cpu-tbrm-reval-n4", "cpu-grpo-n4", "cpu-rloo-n4", "cpu-reinforcepp-n4", "cpu-dapo-n4",
                "cpu-gspo-n4"],
    "primaries": [["TBRM n=4", "DAPO n=4"], ["TBRM-ReVal n=4", "TBRM n=4"]],
    "seeds": 3,
    "blocks": None,  # exploratory at a fixed 3 seeds: no group-sequential looks (a powered run sets them)
}
