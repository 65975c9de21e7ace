"""Benchmark: score SmolLM2-135M-Instruct on ALL of MATH500 (greedy) and AMC23 (4 samples at temperature 1.0)
through the real `tbrm eval` runner, and write accuracy, generation tokens/s, answers graded/s and wall time.

    python benchmarks/eval_smollm2.py                      # full run (about half an hour on 2 CPU cores)
    python benchmarks/eval_smollm2.py --limit 20           # a quick slice

Results: benchmarks/results/eval_smollm2.json and .md. The run directories under --runs are resumable: rerun the
same command after an interruption and it continues (wall time then covers the resumed part only; the
generation and grading seconds in the summary cover everything on disk).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from evals.portable import portable_path

HERE = Path(__file__).resolve().parent


def grading_throughput(sample_files: list[Path], workers: int | None) -> dict:
    """Re-grade every stored response in one batch: the verifier's steady-state answers/second."""
    from evals.grading.verifier import Verifier
    from evals.io import read_jsonl

    pairs = [(r["response"], r["gold"]) for f in sample_files for r in read_jsonl(f)]
    with Verifier(workers=workers) as v:
        v.verify_batch(pairs[:8])  # warm the workers
        t0 = time.perf_counter()
        verdicts = v.verify_batch(pairs)
        dt = time.perf_counter() - t0
    return {"answers": len(pairs), "seconds": round(dt, 3), "answers_per_second": len(pairs) / dt,
            "timeouts": sum(x.outcome.value == "timeout" for x in verdicts)}


def generate_parity(batch: int = 64, new_tokens: int = 64, dtype: str = "float32") -> dict:
    """Like-for-like check of harness overhead: the same 64 short prompts sampled at T=1.0 by a plain
    `model.generate` call and by the harness's HFGenerator (the DEVELOPERS.md reference setting)."""
    import torch
    from transformers import GenerationConfig

    from evals.prompts import render_prompt
    from evals.engines.base import SamplingParams
    from evals.engines.hf import HFGenerator
    from evals.models import load_model, load_tokenizer, resolve_model
    from tbrm.tasks import ArithmeticTask

    path = resolve_model("smollm2-135m-instruct")
    tok, model = load_tokenizer(path), load_model(path, dtype=dtype)
    problems = ArithmeticTask(digits=(1, 2), heldout_size=batch).problems("heldout")
    prompts = [render_prompt(p.problem, "qwen-math", tok) for p in problems][:batch]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    cfg = GenerationConfig(max_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0, eos_token_id=2,
                           pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, generation_config=cfg)
    plain_s = time.perf_counter() - t0
    new = out[:, enc.input_ids.shape[1]:]
    # tokens up to and including the first EOS, as the harness counts them
    plain_tokens = sum(min(len(row), (row == 2).nonzero()[0].item() + 1 if (row == 2).any() else len(row)) for row in new)
    gen = HFGenerator(model, tok, batch_size=batch)
    params = SamplingParams(n=1, temperature=1.0, max_new_tokens=new_tokens, seed=0)
    t0 = time.perf_counter()
    samples = gen.run_batch(prompts, gen.plan(prompts, params)[0], 0, params)
    harness_s = time.perf_counter() - t0
    harness_tokens = sum(s.num_tokens for s in samples)
    return {"sequences": batch, "max_new_tokens": new_tokens, "dtype": dtype,
            "plain_generate_tokens_per_second": plain_tokens / plain_s,
            "harness_tokens_per_second": harness_tokens / harness_s,
            "plain_tokens": int(plain_tokens), "harness_tokens": harness_tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark (default: all)")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--runs", default=str(HERE / "runs"), help="where the resumable eval run directories go")
    ap.add_argument("--out", default=str(HERE / "results" / "eval_smollm2"), help="results file stem")
    args = ap.parse_args()

    from evals.runner import EvalConfig, run_eval
    from evals.io import atomic_write_json, atomic_write_text

    suffix = f"-limit{args.limit}" if args.limit else ""
    plan = [("math500", dict(samples=None, temperature=None)),  # paper default: greedy, avg@1
            ("amc23", dict(samples=4, temperature=1.0))]  # 4 samples at T=1.0 (the paper uses 32)
    base = Path(args.out).parent  # paths in the results file are relative to its folder (evals.portable)
    settings = {k: portable_path(v, base) if k in ("runs", "out") else v for k, v in vars(args).items()}
    results = {"settings": settings, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "benchmarks": {}}
    results["generate_parity"] = generate_parity(dtype=args.dtype)
    print("plain generate vs harness:", results["generate_parity"], flush=True)
    for name, over in plan:
        cfg = EvalConfig(model="smollm2-135m-instruct", benchmarks=[name], limit=args.limit,
                         max_new_tokens=args.max_new_tokens, dtype=args.dtype, batch_size=args.batch_size, **over)
        run_dir = Path(args.runs) / f"{name}{suffix}-{args.dtype}-{args.max_new_tokens}"
        t0 = time.perf_counter()
        summary = run_eval(cfg, run_dir)
        wall = time.perf_counter() - t0
        b = summary["benchmarks"][name]
        metric = f"avg@{b['n_samples']}"
        results["benchmarks"][name] = {
            "problems": b["n_problems"], "samples": b["n_samples"], "metric": metric,
            "accuracy": b[metric]["value"], "ci95": [b[metric]["ci_low"], b[metric]["ci_high"]],
            "pass@k": b.get(f"pass@{b['n_samples']}", {}).get("value"), "outcomes": b["outcomes"],
            "lenient_verdicts": b["lenient_verdicts"], "truncation_rate": b["lengths"]["truncation_rate"],
            "mean_tokens": b["lengths"]["mean_tokens"], "generation_tokens_per_second": b["throughput"]["tokens_per_second"],
            "generated_tokens": b["throughput"]["generated_tokens"],
            "generation_seconds": b["throughput"]["generation_seconds"],
            "runner_graded_per_second": b["throughput"]["graded_per_second"], "wall_seconds": round(wall, 1),
            "run_dir": portable_path(run_dir, Path(args.out).parent),  # relative to the results file
        }
        results["versions"] = summary["versions"]
        atomic_write_json(f"{args.out}.json", results)
    files = [Path(args.out).parent / v["run_dir"] / "samples" / f"{k}.jsonl" for k, v in results["benchmarks"].items()]
    results["grading"] = grading_throughput(files, workers=None)
    atomic_write_json(f"{args.out}.json", results)

    lines = ["| benchmark | problems × samples | metric | accuracy (95% CI) | lenient verdicts | truncated | "
             "gen tok/s | graded/s (in run) | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, b in results["benchmarks"].items():
        lines.append(f"| {name} | {b['problems']} × {b['samples']} | {b['metric']} | {100 * b['accuracy']:.1f} "
                     f"({100 * b['ci95'][0]:.1f}–{100 * b['ci95'][1]:.1f}) | {b['lenient_verdicts']} | "
                     f"{100 * b['truncation_rate']:.0f}% | {b['generation_tokens_per_second']:.0f} | "
                     f"{b['runner_graded_per_second']:.0f} | {b['wall_seconds']:.0f} |")
    g = results["grading"]
    lines.append(f"\nVerifier alone: {g['answers']} stored answers re-graded in {g['seconds']:.2f} s = "
                 f"{g['answers_per_second']:.0f} answers/s ({g['timeouts']} timeouts). "
                 f"Settings: {args.dtype}, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
                 f"{os.cpu_count()} CPUs.")
    p = results["generate_parity"]
    lines.append(f"\nSame 64 short prompts sampled at T=1.0, {p['max_new_tokens']} new tokens: plain `model.generate` "
                 f"{p['plain_generate_tokens_per_second']:.0f} tok/s, harness {p['harness_tokens_per_second']:.0f} tok/s.")
    atomic_write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
