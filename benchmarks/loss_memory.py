"""Peak memory of one GRPO / PPO training micro-batch (forward, loss, backward) with and without V(s_1).

    python benchmarks/loss_memory.py               # SmolLM2-135M-Instruct, all 30 decoder layers
    python benchmarks/loss_memory.py --layers 2    # its first 2 decoder layers: same head and vocabulary, minutes

GRPO and PPO never read V(s_1) = logsumexp of the raw logits at the first response position (TBRM's start value).
Computing it for them anyway (`response_forward(..., need_v_start=True)`) saves a view of the raw fp32
[B, T, V] logits for backward, which keeps that whole buffer alive beside the tempered copy (logits / T) the
log-probs are computed from. At temperature 1 the two are one buffer, so nothing is saved there.

Each case runs in its own process: the model (bundled SmolLM2-135M-Instruct, fp32, the recipe's autocast; with
--layers N only its first N decoder layers, which leaves the logits as they are and shrinks the rest) and a
batch of random prompt/response token ids (prompt width 96, the recipe's micro-batch and response length unless
the case says otherwise) are set up and one warm-up micro-batch is run; then the kernel's peak-RSS counter is
reset (`/proc/self/clear_refs`, Linux) and one more micro-batch runs. Figure: its peak RSS (VmHWM) minus the RSS
just before it, in MiB. Buffers this size are mmap'ed by glibc and returned on free, so RSS follows them.

Results: OUT/loss_memory.json and OUT/loss_memory.md (default OUT = benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import machine  # noqa: E402  (benchmarks/, this script's folder)

# (name, recipe, overrides): the CPU recipes' own micro-batch (16 x 48 tokens at T = 0.7), and temperature 1 (the
# paper recipes') where the two buffers are one.
CASES = [
    ("grpo cpu recipe", "cpu-grpo-n4", {}),
    ("ppo cpu recipe", "cpu-ppo-n1", {}),
    ("grpo temperature 1", "cpu-grpo-n4", {"temperature": 1.0}),
]
PROMPT_WIDTH = 96


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(recipe: str, overrides: dict, need_v_start: bool, layers: int | None) -> dict:
    """One measured micro-batch in this process; returns its figures."""
    import gc

    import torch

    from transformers import AutoModelForCausalLM

    from evals.models import resolve_dtype, resolve_model
    from tbrm.api import make_algorithm
    from tbrm.config import load_config
    from tbrm.rollout import collate, response_forward

    torch.manual_seed(0)
    cfg = load_config(recipe, [f"{k}={v}" for k, v in overrides.items()])
    path = resolve_model(cfg.model)
    extra = {"num_hidden_layers": layers} if layers else {}
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(cfg.dtype), **extra)
    policy.train()
    policy.config.use_cache = False
    device = torch.device("cpu")
    algo = make_algorithm(cfg, policy, device)
    B, T, V = cfg.micro_batch_size, cfg.max_new_tokens, policy.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(100, V, (B, PROMPT_WIDTH), generator=g).tolist()
    responses = torch.randint(100, V, (B, T), generator=g).tolist()
    rewards = [float(i % 2) for i in range(B)]
    group = [i // cfg.rollouts_per_prompt for i in range(B)]
    batch = collate(prompts, responses, rewards, group, pad_id=0)

    def forward(b, grad=True):
        with torch.set_grad_enabled(grad):
            return response_forward(policy, b, cfg.autocast, temperature=algo.logit_temperature,
                                    need_v_start=need_v_start)

    with torch.no_grad():
        batch.extra["ref_logprobs"] = forward(batch, grad=False).logprobs  # stands in for the reference model's
    algo.prepare(batch, lambda b: forward(b, grad=False).logprobs)

    def micro_batch():
        out = forward(batch)
        loss, _ = algo.loss(batch, out)
        loss.backward()
        del out, loss
        policy.zero_grad(set_to_none=True)
        algo.after_backward(1)

    micro_batch()  # warm-up: the allocator's and autograd's first-use memory is not what is measured
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    micro_batch()
    peak = _status_kib("VmHWM")
    return {"batch": B, "response_tokens": T, "vocab": V, "temperature": cfg.temperature, "autocast": cfg.autocast,
            "logits_mib": B * T * V * 4 / 2**20, "peak_over_start_mib": (peak - before) / 1024}


def describe_machine() -> dict:
    import torch

    return {**machine.describe(), "cpus_usable": len(os.sched_getaffinity(0)), "torch": torch.__version__}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--layers", type=int, help="keep only the first N decoder layers (default: all)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        spec = json.loads(a.child)
        print(json.dumps(child(spec["recipe"], spec["overrides"], spec["need_v_start"], spec["layers"])))
        return 0
    rows = []
    for name, recipe, overrides in CASES:
        row = {"case": name, "recipe": recipe, "overrides": overrides}
        for label, need in (("with_v_start", True), ("without_v_start", False)):
            spec = json.dumps({"recipe": recipe, "overrides": overrides, "need_v_start": need, "layers": a.layers})
            proc = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True,
                                  cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            if proc.returncode != 0:
                raise SystemExit(f"{name} ({label}) failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update({k: v for k, v in res.items() if k != "peak_over_start_mib"})
            row[label + "_mib"] = res["peak_over_start_mib"]
            print(f"{name:22s} {label:16s} peak +{res['peak_over_start_mib']:7.0f} MiB", flush=True)
        row["saved_mib"] = row["with_v_start_mib"] - row["without_v_start_mib"]
        row["ratio"] = row["without_v_start_mib"] / row["with_v_start_mib"]
        rows.append(row)
    model = "SmolLM2-135M-Instruct (fp32 weights" + (f", first {a.layers} of 30 decoder layers)" if a.layers else ")")
    doc = {"machine": describe_machine(), "model": model, "decoder_layers": a.layers or 30, "prompt_width": PROMPT_WIDTH,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "results": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from evals.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "loss_memory.json", doc)
    m = doc["machine"]
    lines = [
        "# Peak memory of a GRPO / PPO micro-batch with and without V(s_1)", "",
        f"{model}, one micro-batch (forward, loss, backward) of random token ids, prompt "
        f"width {PROMPT_WIDTH}, each figure from its own process: peak RSS during the micro-batch minus the RSS "
        f"before it (after a warm-up micro-batch). 'with V(s_1)': the forward also computes TBRM's V(s_1), which "
        f"GRPO and PPO do not use; 'without': what they run. Logits = one fp32 [B, T, V] buffer. Memory figures do "
        f"not depend on how busy the CPUs are.",
        f"Machine: {m['cpu']}, {m['cpus_usable']} usable CPUs, {m['ram_gb']} GB RAM; torch {m['torch']}.", "",
        "| case | B x T | temperature | logits MiB | peak with V(s_1) MiB | peak without MiB | saved MiB | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['batch']} x {r['response_tokens']} | {r['temperature']} | "
                     f"{r['logits_mib']:.0f} | {r['with_v_start_mib']:.0f} | {r['without_v_start_mib']:.0f} | "
                     f"{r['saved_mib']:.0f} | {r['ratio']:.2f} |")
    cmd = "python benchmarks/loss_memory.py" + (f" --layers {a.layers}" if a.layers else "")
    lines += ["", f"Produced by `{cmd}` ({doc['date']}); figures in loss_memory.json."]
    atomic_write_text(out / "loss_memory.md", "\n".join(lines) + "\n")
    print(f"written: {out / 'loss_memory.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
