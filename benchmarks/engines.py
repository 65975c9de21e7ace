"""Benchmark: the two generation engines side by side in one run, `hf` (transformers generate) and `vllm`.

    python benchmarks/engines.py                       # everything (about an hour on 2 CPU cores)
    python benchmarks/engines.py --limit 20 --train-steps 2 --parts math500 train    # a quick slice

Parts, each run for both engines back to back, on SmolLM2-135M-Instruct in bf16:
  1. all of MATH500, greedy (avg@1), through the real `tbrm eval` runner: accuracy with 95% CI, tokens/s;
  2. AMC23 avg@4 at temperature 1.0;
  3. seconds per training step for TBRM n=1, TBRM n=4, GRPO n=4 and PPO n=1 (benchmarks/train_speed.py's runner,
     one process per run), with the engine's rollout tokens/s and the log-prob mismatch it logs;
  4. the total time of `tbrm reproduce --preset cpu` with the vllm engine (hf: see reproduce_cpu.md);
  5. `harness`: what the suite costs around vLLM. Bare vLLM (`LLM.generate` on the prompts `tbrm eval` renders,
     one greedy `SamplingParams`, the same engine settings) and `tbrm eval --engine vllm` on the first --limit
     MATH500 problems, each in a fresh process, alternating for --repeats rounds: tokens/s of each, their ratio
     and how many texts are identical.
Targets (issue 8): vllm >= 5x hf tokens/s on MATH500 and >= 800 tok/s; accuracy within hf's CI; reproduce <= 15 min.
Target (issue 21): the harness >= 0.95x bare vLLM tokens/s with identical texts.

    python benchmarks/engines.py --parts harness --limit 128 --dtype float32 --out benchmarks/results/engines-harness

Part `openai` (issues 21, 28): MATH500 greedy with `--engine openai` against local vLLM OpenAI-compatible servers
started here (`python -m vllm.entrypoints.openai.api_server`), one after the other, with --concurrency = the
in-process engine's batch size, beside the in-process `vllm` row of the same prompts:
  - `openai`: the CPU settings of docs/vllm-cpu.md (`cpu_server_command`: threads bound to every core, no core
    reserved, one engine process, eager, no chunked prefill, the in-process engine's KV-cache size and batch);
  - `openai-defaults`: the server at its defaults, but for the model, its served name, the dtype and the KV-cache
    size (at its default vLLM on CPU reserves 92% of the machine's memory and does not start on a shared one).
Target: openai >= 0.8x vllm tokens/s, and the same greedy texts for both. Server start-up is not timed.

Results go to benchmarks/results/engines.json and .md, rewritten after every measurement, so an interrupted run
still leaves what it measured; rerunning skips parts already in the JSON (eval runs also resume in place).
Run directories go to benchmarks/runs/engines (ignored by git). The load average is recorded per measurement:
on a shared 2-core machine other jobs inflate the timings.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import machine  # noqa: E402
from evals.io import atomic_write_json, atomic_write_text, read_json  # noqa: E402

ENGINES = ("vllm", "hf")
TRAIN_ALGOS = ("tbrm-n1", "tbrm-n4", "grpo-n4", "ppo-n1")


def rel(p: Path) -> str:
    """Paths in results are relative to the repository (no home directories in committed files)."""
    try:
        return str(Path(p).resolve().relative_to(REPO))
    except ValueError:
        return Path(p).name


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def eval_run_dir(name: str, engine: str, a) -> Path:
    return Path(a.runs) / f"{name}{f'-limit{a.limit}' if a.limit else ''}-{engine}-{a.dtype}-{a.max_new_tokens}"


def eval_part(name: str, engine: str, a, over: dict, run_name: str | None = None) -> dict:
    """One `tbrm eval` process (its engine's memory is returned when it exits); resumes a killed run in place."""
    run_dir = eval_run_dir(name, run_name or engine, a)
    cmd = [sys.executable, "-m", "tbrm.cli", "eval", "--model", "smollm2-135m-instruct", "--benchmarks", name,
           "--max-new-tokens", str(a.max_new_tokens), "--dtype", a.dtype, "--engine", engine, "--kv-cache-gb",
           str(a.kv_cache_gb), "--out", str(run_dir), "--no-progress", *over]
    if a.limit:
        cmd += ["--limit", str(a.limit)]
    load = os.getloadavg()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - t0
    summary = read_json(run_dir / "summary.json")
    b = summary["benchmarks"][name]
    metric = f"avg@{b['n_samples']}"
    return {"engine": summary["engine"], "problems": b["n_problems"], "samples": b["n_samples"], "metric": metric,
            "accuracy": b[metric]["value"], "ci95": [b[metric]["ci_low"], b[metric]["ci_high"]],
            "outcomes": b["outcomes"], "truncation_rate": b["lengths"]["truncation_rate"],
            "mean_tokens": b["lengths"]["mean_tokens"], "generated_tokens": b["throughput"]["generated_tokens"],
            "generation_seconds": b["throughput"]["generation_seconds"],
            "tokens_per_second": b["throughput"]["tokens_per_second"], "wall_seconds": round(wall, 1),
            "batch_size": summary["config"]["batch_size"], "run_dir": rel(run_dir), "load_avg_before": list(load),
            "load_avg_after": list(os.getloadavg()), "finished": now()}


SERVED_MODEL = "smollm2-135m-instruct"  # served under the bundled name, so --engine openai finds its tokenizer


def cpu_server_command(model: str, served: str, dtype: str, kv_cache_gb: float, port: int,
                       python: str = "python") -> tuple[dict[str, str], list[str]]:
    """(environment, command) of a vLLM OpenAI-compatible server on a CPU machine at the in-process engine's
    speed (docs/vllm-cpu.md, "Serving on CPU"): OpenMP threads bound to every core this process may use and none
    reserved for the API server, the model computed by the engine-core process itself (no worker process), eager,
    no chunked prefill (a seeded request whose prompt is split across steps crashes vLLM 0.32 on CPU), the
    in-process engine's KV-cache size and batch."""
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    env = {"VLLM_CPU_OMP_THREADS_BIND": cpus, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", served,
           "--dtype", dtype, "--enforce-eager", "--no-enable-chunked-prefill", "--max-num-seqs", "256",
           "--kv-cache-memory-bytes", str(int(kv_cache_gb * 2**30)), "--distributed-executor-backend", "uni",
           "--host", "127.0.0.1", "--port", str(port)]
    return env, cmd


class LocalServer:
    """A vLLM OpenAI-compatible server for the `openai` part: with the CPU settings of `cpu_server_command`
    (tuned) or at its defaults (but for the model, its served name, the dtype and the KV-cache size); its whole
    process group (API server and engine core) is killed on exit."""

    def __init__(self, a, log: Path, tuned: bool = True):
        from evals.models import resolve_model

        self.model_path, self.a, self.log, self.tuned = resolve_model(SERVED_MODEL), a, log, tuned
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "LocalServer":
        if self.tuned:
            extra_env, cmd = cpu_server_command(self.model_path, SERVED_MODEL, self.a.dtype, self.a.kv_cache_gb,
                                                self.port, python=sys.executable)
        else:
            extra_env = {}
            cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
                   "--served-model-name", SERVED_MODEL, "--dtype", self.a.dtype, "--kv-cache-memory-bytes",
                   str(int(self.a.kv_cache_gb * 2**30)), "--host", "127.0.0.1", "--port", str(self.port)]
        env = {**os.environ, **extra_env}
        self.command = " ".join([*(f"{k}={v}" for k, v in extra_env.items()), "python", *[
            "MODEL" if c == self.model_path else c for c in cmd[1:]]])
        self.log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited {self.proc.returncode}; see {rel(self.log)}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5):
                    break
            except OSError:
                time.sleep(2)
        self.start_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)


OPENAI_SERVERS = {"openai": True, "openai-defaults": False}  # result key -> tuned server (else its defaults)


def openai_part(a, key: str = "openai") -> dict:
    """MATH500 through `--engine openai` against a local server, at the in-process engine's batch size in flight."""
    from evals.runner import ENGINE_BATCH_SIZE

    batch = ENGINE_BATCH_SIZE["vllm"]
    with LocalServer(a, Path(a.runs) / f"{key}-server.log", tuned=OPENAI_SERVERS[key]) as server:
        over = ["--base-url", server.base_url, "--concurrency", str(batch), "--batch-size", str(batch)]
        r = eval_part("math500", "openai", a, over, run_name=key)
    r["server_start_seconds"] = round(server.start_seconds, 1)
    r["server_command"] = server.command
    r["concurrency"] = batch
    return r


def same_texts(doc: dict, a, bench: str = "math500", key: str = "openai") -> dict:
    """How many greedy responses of an openai run equal the in-process vllm run's, by (problem, sample)."""
    from evals.io import read_jsonl

    runs = {e: eval_run_dir(bench, e, a) / "samples" / f"{bench}.jsonl" for e in ("vllm", key)}
    texts = {e: {(r["problem_id"], r["sample_index"]): r["response"] for r in read_jsonl(f)} for e, f in runs.items()}
    same = sum(texts[key].get(k) == v for k, v in texts["vllm"].items())
    return {"identical": same, "of": len(texts["vllm"])}


def autocast_tag(a, sep: str) -> str:
    """What names a training measurement's autocast, in run folders and result keys ("" for the default bf16)."""
    return "" if a.autocast == "bf16" else f"{sep}autocast-{a.autocast}"


def train_part(algo: str, engine: str, a) -> dict:
    import train_speed

    ta = train_speed.parse_args(["--steps", str(a.train_steps), "--set", f"engine={engine}", "--skip-trl",
                                 "--autocast", a.autocast])
    overrides = train_speed.common_overrides(ta) + train_speed.ALGORITHMS[algo]["overrides"]
    run = Path(a.runs) / "train" / f"{algo}-{engine}{autocast_tag(a, '-')}"
    entry = train_speed.run_algorithm(algo, overrides, run, a.train_steps)
    entry["autocast"] = a.autocast
    if entry.get("status") == "ok":
        rows = train_speed.read_rows(Path(entry["run_dir"]), "ours")
        later = rows[1:] or rows
        for key in ("rollout/logprob_diff_mean", "rollout/logprob_diff_max", "time/weight_sync"):
            vals = [r[key] for r in later if r.get(key) is not None]
            entry[key] = sum(vals) / len(vals) if vals else None
        entry["engine_used"] = entry.get("train_config", {}).get("engine_used")
    entry.pop("train_config", None)
    entry["command"] = [Path(c).name if os.path.isabs(c) else c for c in entry["command"]]
    entry["run_dir"] = rel(Path(entry["run_dir"]))
    return entry


def reproduce_part(a) -> dict:
    out = Path(a.runs) / "reproduce-vllm"
    cmd = [sys.executable, "-m", "tbrm.cli", "reproduce", "--preset", "cpu", "--engine", "vllm", "--out", str(out),
           "--no-progress"]
    load = os.getloadavg()
    t0 = time.perf_counter()
    log = out.parent / "reproduce-vllm.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    wall = time.perf_counter() - t0
    stages = read_json(out / "stages.json") if (out / "stages.json").exists() else {}
    return {"engine": "vllm", "returncode": rc, "wall_seconds_this_invocation": round(wall, 1),
            "total_stage_seconds": round(sum(stages.values()), 1), "stages": stages, "run_dir": rel(out),
            "log": rel(log), "load_avg_before": list(load), "load_avg_after": list(os.getloadavg()),
            "finished": now()}


HARNESS_BENCHMARK = "math500"


def bare_vllm_worker(a, out: Path) -> None:
    """Bare vLLM in this process: `LLM.generate` over the prompts `tbrm eval` renders, with the settings
    `tbrm eval --engine vllm` gives the engine (dtype, eager, KV-cache size, in-process engine on this process's
    cores) and vLLM's own defaults for the rest; writes tokens, seconds and texts to `out`."""
    from evals.benchmarks import load_benchmark
    from evals.models import load_tokenizer, resolve_model
    from evals.prompts import render_prompt

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, sorted(os.sched_getaffinity(0)))))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    from vllm import LLM, SamplingParams

    path = resolve_model("smollm2-135m-instruct")
    tok = load_tokenizer(path)
    problems = load_benchmark(HARNESS_BENCHMARK, limit=a.limit)
    prompts = [render_prompt(p.problem, "qwen-math", tok) for p in problems]
    llm = LLM(model=path, dtype=a.dtype, seed=0, enforce_eager=True, max_num_seqs=256,
              kv_cache_memory_bytes=int(a.kv_cache_gb * 2**30))
    t0 = time.perf_counter()
    outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=a.max_new_tokens), use_tqdm=False)
    seconds = time.perf_counter() - t0
    atomic_write_json(out, {"generated_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
                            "generation_seconds": seconds, "texts": [o.outputs[0].text for o in outputs],
                            "problem_ids": [p.id for p in problems]})


def harness_part(a) -> dict:
    """Bare vLLM and `tbrm eval --engine vllm`, alternating in fresh processes (see the module docstring)."""
    import shutil
    from statistics import median as med

    from evals.io import read_jsonl

    runs = Path(a.runs) / "harness"
    runs.mkdir(parents=True, exist_ok=True)
    rounds = []
    for r in range(a.repeats):
        entry = {}
        for side in (("bare", "harness") if r % 2 == 0 else ("harness", "bare")):
            load = os.getloadavg()
            if side == "bare":
                out = runs / "bare.json"
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--bare-worker", str(out), "--limit",
                                str(a.limit), "--dtype", a.dtype, "--max-new-tokens", str(a.max_new_tokens),
                                "--kv-cache-gb", str(a.kv_cache_gb)], check=True, cwd=REPO)
                got = read_json(out)
            else:
                run_dir = runs / "eval"
                shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each round, not a resumed one
                subprocess.run([sys.executable, "-m", "tbrm.cli", "eval", "--model", "smollm2-135m-instruct",
                                "--benchmarks", HARNESS_BENCHMARK, "--limit", str(a.limit), "--engine", "vllm",
                                "--dtype", a.dtype, "--max-new-tokens", str(a.max_new_tokens), "--kv-cache-gb",
                                str(a.kv_cache_gb), "--out", str(run_dir), "--no-progress"], check=True, cwd=REPO,
                               stdout=subprocess.DEVNULL)
                t = read_json(run_dir / "summary.json")["benchmarks"][HARNESS_BENCHMARK]["throughput"]
                rows = read_jsonl(run_dir / "samples" / f"{HARNESS_BENCHMARK}.jsonl")
                got = {"generated_tokens": t["generated_tokens"], "generation_seconds": t["generation_seconds"],
                       "responses": {row["problem_id"]: row["response"] for row in rows}}
            got["tokens_per_second"] = got["generated_tokens"] / got["generation_seconds"]
            got["load_avg_before"], got["load_avg_after"] = list(load), list(os.getloadavg())
            entry[side] = got
            print(f"harness round {r + 1}/{a.repeats} {side}: {got['tokens_per_second']:.1f} tok/s "
                  f"(load {load[0]:.1f})", flush=True)
        rounds.append(entry)
    bare = rounds[0]["bare"]
    same = sum(text == rounds[0]["harness"]["responses"].get(pid) for pid, text in zip(bare["problem_ids"],
                                                                                      bare["texts"], strict=True))
    texts = len(bare["texts"])
    for entry in rounds:
        for side in entry.values():
            for key in ("texts", "problem_ids", "responses"):
                side.pop(key, None)
    bare = sorted(e["bare"]["tokens_per_second"] for e in rounds)
    harness = sorted(e["harness"]["tokens_per_second"] for e in rounds)
    return {"benchmark": HARNESS_BENCHMARK, "problems": a.limit, "rounds": rounds,
            "bare_tokens_per_second_median": med(bare), "harness_tokens_per_second_median": med(harness),
            "ratio_of_medians": med(harness) / med(bare),
            "ratio_per_round": [e["harness"]["tokens_per_second"] / e["bare"]["tokens_per_second"] for e in rounds],
            "identical_texts": same, "texts": texts, "finished": now()}


def _f(x, fmt=".0f"):
    return "-" if x is None else format(x, fmt)


def markdown(doc: dict) -> str:
    lines = ["# Generation engines side by side: `hf` vs `vllm` (SmolLM2-135M-Instruct)", "",
             f"Machine: {machine.line(doc['machine'])}, Python {doc['machine']['python']}, "
             f"{doc['machine']['versions']}. Settings: {doc['settings']['dtype']}, max_new_tokens "
             f"{doc['settings']['max_new_tokens']}, problems per benchmark: "
             f"{doc['settings']['limit'] or 'all'}, training steps per run: {doc['settings']['train_steps']}. "
             f"Started {doc['started']}, updated {doc['updated']}.", "",
             "## Evaluation", "",
             "| benchmark | engine | problems × samples | metric | accuracy (95% CI) | tok/s | generated tokens | "
             "gen s | wall s | load avg before/after |", "|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for key, r in doc["eval"].items():
        bench, engine = key.split("/")
        lines.append(f"| {bench} | {engine} | {r['problems']} × {r['samples']} | {r['metric']} | "
                     f"{100 * r['accuracy']:.1f} ({100 * r['ci95'][0]:.1f}–{100 * r['ci95'][1]:.1f}) | "
                     f"{_f(r['tokens_per_second'])} | {r['generated_tokens']} | {r['generation_seconds']:.0f} | "
                     f"{r['wall_seconds']:.0f} | {r['load_avg_before'][0]:.1f} / {r['load_avg_after'][0]:.1f} |")
    for bench in ("math500", "amc23"):
        v, h = doc["eval"].get(f"{bench}/vllm"), doc["eval"].get(f"{bench}/hf")
        if v and h and h["tokens_per_second"]:
            ratio = v["tokens_per_second"] / h["tokens_per_second"]
            inside = h["ci95"][0] <= v["accuracy"] <= h["ci95"][1]
            lines.append(f"\n{bench}: vllm/hf tokens/s = **{ratio:.1f}x**; vllm accuracy "
                         f"{'inside' if inside else 'OUTSIDE'} hf's 95% CI.")
    v = doc["eval"].get("math500/vllm")
    for key, what in (("openai", "CPU settings"), ("openai-defaults", "at its defaults")):
        o = doc["eval"].get(f"math500/{key}")
        if v and o and v["tokens_per_second"]:
            ratio = o["tokens_per_second"] / v["tokens_per_second"]
            same = doc.get("openai_same_texts" if key == "openai" else f"{key}_same_texts") or {}
            lines.append(f"\nmath500: {key} (local vLLM server, {what}, concurrency {o.get('concurrency')}) / "
                         f"in-process vllm tokens/s = **{ratio:.2f}x** (target >= 0.8x: "
                         f"{'met' if ratio >= 0.8 else 'NOT met'}); greedy texts identical: {same.get('identical')}/"
                         f"{same.get('of')}; server start-up {o.get('server_start_seconds')} s (not timed). Server: "
                         f"`{o.get('server_command')}`.")
    for key, r in doc.get("eval_partial", {}).items():
        lines.append(f"\n{key} (stopped before the end: {r['sequences']} sequences in {r['batches']} finished "
                     f"batches): {r['generated_tokens']} tokens in {r['generation_seconds']:.0f} s = "
                     f"**{_f(r['tokens_per_second'])} tok/s**; {r['correct']} correct."
                     + (f" {r['note']}" if r.get("note") else ""))
    lines += ["", "## Training: seconds per step (mean over steps after the first; bf16 autocast unless noted)", "",
              "| algorithm | engine | s/step | generation s | training s | weight sync s | rollout tok/s | "
              "mean/max abs Δ log p | peak GB | load avg before/after |", "|---|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for key, r in doc["train"].items():
        algo, engine = key.split("/")[:2]
        algo += f", autocast {r['autocast']}" if r.get("autocast", "bf16") != "bf16" else ""
        if r.get("status") != "ok":
            lines.append(f"| {algo} | {engine} | failed (exit {r.get('returncode')}) | | | | | | | |")
            continue
        s = r["s_per_step"]
        tok = r["tokens_per_second"][r["basis"]]
        engine += f" ({r['engine_used']['dtype']})" if (r.get("engine_used") or {}).get("dtype") else ""
        mm = ("-" if r.get("rollout/logprob_diff_mean") is None else
              f"{r['rollout/logprob_diff_mean']:.3f} / {r['rollout/logprob_diff_max']:.2f}")
        lines.append(f"| {algo} | {engine} | {r['headline_s_per_step']:.2f} | {_f(s['generation'][r['basis']], '.2f')} | "
                     f"{_f(s['training'][r['basis']], '.2f')} | {_f(r.get('time/weight_sync'), '.2f')} | {_f(tok)} | "
                     f"{mm} | {r['peak_memory_gb']:.2f} | {r['load_avg_before'][0]:.1f} / {r['load_avg_after'][0]:.1f} |")
    rep = doc.get("reproduce")
    if rep:
        lines += ["", "## `tbrm reproduce --preset cpu --engine vllm`", "",
                  f"Total of its stages: **{rep['total_stage_seconds'] / 60:.1f} min** (exit {rep['returncode']}; "
                  f"target 15 min; load average before {rep['load_avg_before'][0]:.1f}, after "
                  f"{rep['load_avg_after'][0]:.1f}). hf: benchmarks/results/reproduce_cpu.md.", "",
                  "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in rep["stages"].items()]
    h = doc.get("harness")
    if h:
        lines += ["", "## What the harness costs: `tbrm eval --engine vllm` vs bare vLLM `LLM.generate`", "",
                  f"First {h['problems']} {h['benchmark']} problems, greedy, {len(h['rounds'])} rounds alternating "
                  f"fresh processes. **Harness / bare = {h['ratio_of_medians']:.3f}** (medians: "
                  f"{h['harness_tokens_per_second_median']:.1f} vs {h['bare_tokens_per_second_median']:.1f} tok/s; per "
                  f"round {', '.join(f'{x:.3f}' for x in h['ratio_per_round'])}); identical texts "
                  f"{h['identical_texts']}/{h['texts']}. Target: >= 0.95.", "",
                  "| round | side | tok/s | generated tokens | gen s | load avg before/after |",
                  "|---:|---|---:|---:|---:|---|"]
        for i, e in enumerate(h["rounds"], 1):
            for side, r in e.items():
                lines.append(f"| {i} | {side} | {r['tokens_per_second']:.1f} | {r['generated_tokens']} | "
                             f"{r['generation_seconds']:.1f} | {r['load_avg_before'][0]:.1f} / "
                             f"{r['load_avg_after'][0]:.1f} |")
    missing = [k for k in ("math500", "amc23") if not any(x.startswith(k + "/") for x in doc["eval"])]
    missing += ["training"] if not doc["train"] else []
    missing += ["reproduce"] if not rep else []
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(missing)}."]
    lines += ["", "Produced by `python benchmarks/engines.py`; figures in engines.json."]
    return "\n".join(lines) + "\n"


def partial_eval(run_dir: Path) -> dict:
    """Figures of an eval run stopped before its end, from the batches it finished (samples/*.jsonl)."""
    from evals.io import read_jsonl

    rows = [r for f in sorted((run_dir / "samples").glob("*.jsonl")) for r in read_jsonl(f, torn_tail="skip")]
    seconds = sum({r["batch_index"]: r["gen_seconds"] for r in rows}.values())
    tokens = sum(r["num_tokens"] for r in rows)
    return {"run_dir": rel(run_dir), "sequences": len(rows), "batches": len({r["batch_index"] for r in rows}),
            "generated_tokens": tokens, "generation_seconds": round(seconds, 1),
            "tokens_per_second": tokens / seconds if seconds else None,
            "correct": sum(r["outcome"] == "correct" for r in rows),
            "problem_ids": sorted({r["problem_id"] for r in rows})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="first N problems of each benchmark (default: all)")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="as in eval_smollm2.py (default 256)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--kv-cache-gb", type=float, default=4.0)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="harness part: rounds of bare vLLM and tbrm eval")
    ap.add_argument("--bare-worker", metavar="OUT", help=argparse.SUPPRESS)  # harness part: the bare vLLM process
    ap.add_argument("--parts", nargs="+", choices=["math500", "train", "reproduce", "amc23", "harness", "openai"],
                    default=["math500", "train", "reproduce", "amc23"], help="what to run, in this order")
    ap.add_argument("--algos", nargs="+", choices=TRAIN_ALGOS, default=list(TRAIN_ALGOS),
                    help="algorithms of the training part (default: all)")
    ap.add_argument("--autocast", default="bf16", choices=["bf16", "none", "auto"],
                    help="training forward autocast (default bf16; auto = bf16 only where it is native)")
    ap.add_argument("--runs", default=str(HERE / "runs" / "engines"))
    ap.add_argument("--out", default=str(HERE / "results" / "engines"), help="results file stem")
    a = ap.parse_args(argv)
    if a.bare_worker:
        bare_vllm_worker(a, Path(a.bare_worker))
        return 0
    if "harness" in a.parts and not a.limit:
        ap.error("--parts harness needs --limit (the number of MATH500 problems, e.g. 128)")
    from evals.runner import package_versions
    from evals.engines.base import vllm_version

    path = Path(f"{a.out}.json")
    settings = {"limit": a.limit, "max_new_tokens": a.max_new_tokens, "dtype": a.dtype, "train_steps": a.train_steps}
    doc = read_json(path) if path.exists() else {}
    if doc.get("settings") != settings:
        doc = {"settings": settings, "started": now(), "eval": {}, "train": {}}
    doc["machine"] = {**machine.describe(), "cpus": os.cpu_count(),
                      "versions": {**{k: v for k, v in package_versions().items() if k in ("torch", "transformers")},
                                   "vllm": vllm_version()}}

    def save():
        doc["updated"] = now()
        atomic_write_json(path, doc)
        atomic_write_text(f"{a.out}.md", markdown(doc))

    plan = {"math500": [], "amc23": ["--samples", "4", "--temperature", "1.0"]}
    for part in a.parts:  # in the order given: an interrupted run has the most important figures first
        if part in plan:
            for engine in ENGINES:
                key = f"{part}/{engine}"
                if key not in doc["eval"]:
                    print(f"== {key}", flush=True)
                    doc["eval"][key] = eval_part(part, engine, a, plan[part])
                    save()
                r = doc["eval"][key]
                print(key, {k: r[k] for k in ("accuracy", "tokens_per_second", "wall_seconds")}, flush=True)
        elif part == "openai":  # side by side with the in-process engine, on the same prompts, in this run
            for engine in ("vllm", *OPENAI_SERVERS):
                key = f"math500/{engine}"
                if key not in doc["eval"]:
                    print(f"== {key}", flush=True)
                    doc["eval"][key] = (openai_part(a, engine) if engine in OPENAI_SERVERS
                                        else eval_part("math500", engine, a, []))
                    save()
            for engine in OPENAI_SERVERS:
                same = same_texts(doc, a, key=engine)
                doc["openai_same_texts" if engine == "openai" else f"{engine}_same_texts"] = same
                save()
                r = doc["eval"][f"math500/{engine}"]
                print(f"math500/{engine}", {k: r[k] for k in ("accuracy", "tokens_per_second", "wall_seconds")},
                      same, flush=True)
        elif part == "train":
            for algo in a.algos:
                for engine in ENGINES:
                    key = f"{algo}/{engine}{autocast_tag(a, '/')}"
                    if doc["train"].get(key, {}).get("status") != "ok":
                        doc["train"][key] = train_part(algo, engine, a)
                        save()
        elif part == "harness" and "harness" not in doc:
            print("== harness: bare vLLM vs tbrm eval --engine vllm", flush=True)
            doc["harness"] = harness_part(a)
            save()
        elif part == "reproduce" and doc.get("reproduce", {}).get("returncode") != 0:
            print("== tbrm reproduce --preset cpu --engine vllm", flush=True)
            doc["reproduce"] = reproduce_part(a)
            save()
    save()
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
