"""The evaluation runner behind `tbrm eval` and the trainer's periodic held-out evaluation.

A run directory holds:
  config.json            what was asked and resolved (sampling per benchmark, template, model fingerprint)
  samples/<bench>.jsonl  one row per (problem, sample), appended batch by batch as generation goes
  summary.json           metrics per benchmark, throughput, package versions (rewritten atomically at the end)

Resume: generation follows a deterministic plan of batches (`evals.engines.base`); a batch is written in one
append after it is generated and graded, so rerunning the same command skips every batch already on disk and
regenerates only the rest (a torn final batch is dropped and redone). The summary is computed from the rows
on disk, so a resumed run reaches the same summary as an uninterrupted one.
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from evals.metrics import length_stats, outcome_counts, problem_results, summarize
from evals.models import DEFAULT_MODEL
from evals.problem import Problem
from evals.prompts import DEFAULT_TEMPLATE, TEMPLATES
from evals.engines.base import Generator, SamplingParams, run_batches
from evals.io import append_jsonl, atomic_write_json, atomic_write_jsonl, read_json, read_jsonl

if TYPE_CHECKING:  # the verifier pulls in sympy and Math-Verify: imported where grading starts
    from evals.grading.verifier import Verifier


def _setting(default: Any = MISSING, *, identity: bool, help: str, default_factory: Any = MISSING, **flag) -> Any:
    """An EvalConfig field. identity: whether it changes what is generated or how it is graded (a resumed run
    must match on it). help: the `tbrm eval` flag's help (`evals.dataclass_args`); `flag` adds `choices`,
    `group` and, for an identity field, `absent_means`: the value a run written before the field existed used."""
    return field(default=default, default_factory=default_factory,
                 metadata={"identity": identity, "help": help, **flag})


_ENGINE = "generation engine"
_OPENAI = "openai engine (--engine openai)"


@dataclass
class EvalConfig:
    """What `tbrm eval` runs; each field is one of its flags. Fields left None take each benchmark's paper default
    (AIME/AMC: 32 samples at temperature 1.0 -> avg@32; the others greedy -> avg@1; 2048 new tokens)."""

    model: str = _setting(DEFAULT_MODEL, identity=True,
                          help="HF hub id, local HF directory (e.g. RUN_DIR/checkpoint-N) or bundled short name "
                               f"(default: {DEFAULT_MODEL}); a resumed run compares the model's fingerprint. With --engine openai, the "
                               "served model's name")
    benchmarks: list[str] | None = _setting(
        None, identity=True,
        help="registry names (math500 aime24 aime25 amc23 minerva olympiadbench gsm8k); default math500 unless "
             "--data-file is given")
    limit: int | None = _setting(None, identity=True, help="first N problems of each benchmark (a slice)")
    data_file: str | None = _setting(None, identity=True, help="a JSONL/Parquet file of your own problems")
    problem_field: str = _setting("problem", identity=True, help="field path of the problem text in --data-file")
    answer_field: str = _setting("answer", identity=True,
                                 help="field path of the gold answer, e.g. final_answer[0]")
    id_field: str | None = _setting(None, identity=True,
                                    help="field path of the problem id in --data-file (default: the row index)")
    samples: int | None = _setting(None, identity=True,
                                   help="samples per problem (default: the benchmark's paper default)")
    temperature: float | None = _setting(None, identity=True,
                                         help="0 = greedy (default: the benchmark's paper default)")
    top_p: float | None = _setting(None, identity=True, help="nucleus sampling mass (default: the benchmark's, 1.0)")
    max_new_tokens: int | None = _setting(None, identity=True,
                                          help="default: the benchmark's (2048, as in the paper)")
    template: str = _setting(DEFAULT_TEMPLATE, identity=True, choices=TEMPLATES,
                             help="prompt template (evals/prompts.py)")
    dtype: str = _setting("float32", identity=True, choices=("float32", "bfloat16", "float16"),
                          help="dtype of the model's weights")
    device: str = _setting("auto", identity=False, help="auto, cpu, cuda, cuda:1 ...")
    threads: int | None = _setting(None, identity=False, help="CPU threads for torch (default: torch's choice)")
    batch_size: int | None = _setting(None, identity=True,
                                      help="sequences per generation batch, the unit of resume (default: hf 64, "
                                           "vllm 256)")
    seed: int = _setting(0, identity=True, help="sampling seed")
    lenient: bool = _setting(False, identity=True,
                             help="where Math-Verify finds no answer, take the last 'answer is X' phrase or the last "
                                  "number (for small models that never box); such verdicts are flagged 'lenient' "
                                  "and counted. Off by default: benchmark scores should not depend on it")
    audit: bool = _setting(False, identity=False,
                           help="also grade every answer with plain Math-Verify and report where the two disagree, "
                                "how many verdicts flip and how far each score moves (audit.json, "
                                "audit_disagreements.jsonl)")
    engine: str = _setting("auto", identity=True, absent_means="hf", group=_ENGINE, choices=("hf", "vllm", "auto", "openai"),
                           help="hf = transformers generate; vllm = vLLM in-process; auto (default) = vllm when it is "
                                "installed and supports the model on this device; openai = requests to "
                                "OpenAI-compatible servers (--base-url; --model is then the served name)")
    compile: bool = _setting(False, identity=False, group=_ENGINE,
                             help="vllm: torch.compile the model (+10-25% tokens/s, but about a minute more start-up "
                                  "on CPU)")
    kv_cache_gb: float = _setting(4.0, identity=False, group=_ENGINE, help="vllm on CPU: KV-cache size in GiB")
    gpu_memory_utilization: float = _setting(0.85, identity=False, group=_ENGINE, help="vllm on CUDA")
    tensor_parallel_size: int = _setting(1, identity=False, group=_ENGINE, help="vllm on CUDA: GPUs per model")
    data_parallel_size: int = _setting(
        1, identity=False, group=_ENGINE,
        help="vllm: engine replicas, each in its own process on its own GPUs (tensor-parallel-size each) or, on CPU, "
             "its share of the cores; they share the batches (--batch-size: give each replica some). Samples do not "
             "depend on it, so a run may resume with another value")
    verifier_timeout: float = _setting(5.0, identity=False, help="seconds per answer before 'timeout'")
    verifier_workers: int | None = _setting(None, identity=False,
                                            help="grader processes (default: min(2, CPU cores))")
    data_dir: str | None = _setting(None, identity=False,
                                    help="benchmark data folder (default: $TBRM_DATA_DIR or ../shared/data)")

    # --engine openai: an OpenAI-compatible server generates (evals.engines.openai_engine); `model` is the served name
    base_url: list[str] = _setting(
        identity=False, group=_OPENAI, repeatable=True, default_factory=list,
        help="server URL such as http://HOST:8000/v1; repeat it to spread the requests over servers")
    tokenizer: str | None = _setting(
        None, identity=False, group=_OPENAI,
        help="the served model's tokenizer (bundled name, local folder or hub id) for rendering completions "
             "prompts; default: --model when it resolves to one")
    api: str | None = _setting(
        None, identity=True, absent_means=None, group=_OPENAI, choices=("completions", "chat"),
        help="completions (send the token ids of the prompt this suite renders, the in-process engines' ids) or chat "
             "(the server applies its chat template); default completions where a tokenizer is available")
    api_key_env: str | None = _setting(
        None, identity=False, group=_OPENAI,
        help="name of the environment variable holding the API key (the key is never written anywhere)")
    concurrency: int = _setting(64, identity=False, group=_OPENAI, help="requests in flight, over all servers")
    request_timeout: float | None = _setting(
        None, identity=False, group=_OPENAI,
        help="seconds to wait for an answer before the request is retried as timed out (default: no limit, so a "
             "request waiting in a busy server's queue is never restarted; a server that dies resets its "
             "connections, which are retried)")
    connect_timeout: float = _setting(10.0, identity=False, group=_OPENAI,
                                      help="seconds to reach a server before the attempt counts as failed")
    max_retries: int = _setting(
        5, identity=False, group=_OPENAI,
        help="retries of a request after 429, 5xx, a connection error, a timeout or an abort where no other "
             "server is healthy (exponential backoff with jitter, or the server's Retry-After) before the run stops")
    retry_time_budget: float = _setting(
        1800.0, identity=False, group=_OPENAI,
        help="seconds one request may spend waiting for retries in all (Retry-After waits, backoff, every server "
             "out of rotation) before the run stops")
    reasoning_api: bool = _setting(
        False, identity=True, absent_means=False, group=_OPENAI,
        help="hosted reasoning models: send max_completion_tokens and no temperature or top_p (detected from the "
             "server's 400 otherwise)")
    strip_thinking: str | None = _setting(
        None, identity=True, absent_means=None, group=_OPENAI,
        help="a thinking block's end token (e.g. </think>): the text up to its last occurrence is kept as the "
             "sample's reasoning and not graded")

    def __post_init__(self):
        if self.benchmarks is None:  # no benchmark named: math500, unless the problems come from a file
            self.benchmarks = [] if self.data_file else ["math500"]

    @staticmethod
    def identity_fields() -> tuple[str, ...]:
        """The fields that change what is generated or how it is graded: a resumed run must match on all."""
        return tuple(f.name for f in fields(EvalConfig) if f.metadata["identity"])

    @staticmethod
    def identity_absent() -> dict[str, Any]:
        """What a run whose config.json predates an identity field used for it."""
        return {f.name: f.metadata["absent_means"] for f in fields(EvalConfig) if "absent_means" in f.metadata}


ENGINE_BATCH_SIZE = {"hf": 64, "vllm": 256, "openai": 256}


@dataclass
class BenchmarkTask:
    name: str
    problems: list[Problem]
    params: SamplingParams


class RunMismatchError(RuntimeError):
    pass


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("tbrm-bench", "torch", "transformers", "math-verify", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def resolve_tasks(cfg: EvalConfig) -> list[BenchmarkTask]:
    """Load every benchmark's problems and decide its sampling, before any model is loaded (bad data and
    bad names fail in seconds)."""
    from evals.benchmarks import get_benchmark, load_benchmark, load_problems_file

    tasks = []
    names = list(cfg.benchmarks or [])
    if cfg.data_file:
        names.append("file")
    if not names:
        raise ValueError("nothing to evaluate: name --benchmarks and/or --data-file")
    for name in names:
        if name == "file":
            problems = load_problems_file(cfg.data_file, problem_field=cfg.problem_field,
                                          answer_field=cfg.answer_field, id_field=cfg.id_field, limit=cfg.limit)
            name = Path(cfg.data_file).stem
            samples, temperature, top_p, max_new = 1, 0.0, 1.0, 2048
        else:
            spec = get_benchmark(name)
            problems = load_benchmark(name, data_dir=cfg.data_dir, limit=cfg.limit)
            samples, temperature, top_p, max_new = spec.samples, spec.temperature, spec.top_p, spec.max_new_tokens
        params = SamplingParams(
            n=cfg.samples if cfg.samples is not None else samples,
            temperature=cfg.temperature if cfg.temperature is not None else temperature,
            top_p=cfg.top_p if cfg.top_p is not None else top_p,
            max_new_tokens=cfg.max_new_tokens if cfg.max_new_tokens is not None else max_new,
            seed=cfg.seed,
        )
        if params.greedy and params.n > 1:
            # greedy decoding gives every sample the same text: generate it once (avg@1 == avg@n here)
            print(f"{name}: greedy decoding, so 1 sample per problem instead of {params.n}", flush=True)
            params.n = 1
        tasks.append(BenchmarkTask(name, problems, params))
    return tasks


def evaluate_problems(
    name: str,
    problems: Sequence[Problem],
    prompts: Sequence[str],
    params: SamplingParams,
    generator: Generator,
    verifier: Verifier,
    samples_path: str | Path,
    *,
    progress: bool = True,
    on_batch: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Generate, grade and append rows for every batch of the plan not yet in `samples_path`; return all
    rows (old and new) sorted by (problem, sample)."""
    from tqdm.auto import tqdm

    samples_path = Path(samples_path)
    plan = generator.plan(prompts, params)
    rows = read_jsonl(samples_path)
    by_batch: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_batch[r["batch_index"]].append(r)
    done = {b for b, rs in by_batch.items() if b < len(plan) and len(rs) == len(plan[b])}
    if len(done) != len(by_batch):  # a torn batch from a crash: drop its rows, it will be regenerated
        kept = [r for r in rows if r["batch_index"] in done]
        atomic_write_jsonl(samples_path, kept)
        rows = kept
    if done:
        print(f"{name}: resuming, {len(done)}/{len(plan)} batches already on disk", flush=True)
    total = sum(len(b) for b in plan)
    bar = tqdm(total=total, desc=f"{name}", unit="seq", disable=not progress, dynamic_ncols=True)
    bar.update(sum(len(plan[b]) for b in done))
    gen_tokens, gen_seconds = 0, 0.0
    todo = [(bi, batch) for bi, batch in enumerate(plan) if bi not in done]
    for bi, samples in run_batches(generator, prompts, todo, params):  # in completion order when data-parallel
        t0 = time.perf_counter()
        verdicts = verifier.verify_batch([(s.text, problems[s.prompt_index].answer) for s in samples])
        verify_seconds = time.perf_counter() - t0
        new = []
        for s, v in zip(samples, verdicts):
            p = problems[s.prompt_index]
            new.append({
                "benchmark": name, "problem_id": p.id, "sample_index": s.sample_index, "batch_index": bi,
                "response": s.text, "gold": p.answer, "extracted": v.extracted, "extraction": v.extraction,
                "outcome": v.outcome.value, "answer_key": v.answer_key, "rules": list(v.rules),
                "num_tokens": s.num_tokens,
                "finish_reason": s.finish_reason, "gen_seconds": round(s.seconds, 4),
                "verify_seconds": round(verify_seconds, 4),
            })
            if getattr(s, "reasoning", None) is not None:  # a served reasoning model's thinking, not graded
                new[-1]["reasoning"] = s.reasoning
            if getattr(s, "error", None) is not None:  # a served sample without an answer (prompt too long)
                new[-1]["error"] = s.error
        append_jsonl(samples_path, new)
        rows.extend(new)
        if on_batch:
            on_batch(new)
        gen_tokens += sum(s.num_tokens for s in samples)
        gen_seconds += samples[0].seconds if samples else 0.0
        bar.update(len(samples))
        bar.set_postfix(tok_s=f"{gen_tokens / max(gen_seconds, 1e-9):.0f}",
                        acc=f"{sum(r['outcome'] == 'correct' for r in rows) / max(len(rows), 1):.3f}")
    bar.close()
    order = {p.id: i for i, p in enumerate(problems)}
    rows.sort(key=lambda r: (order.get(r["problem_id"], 1 << 30), r["sample_index"]))
    return rows


def summarize_rows(rows: Sequence[dict], params: SamplingParams | None = None) -> dict:
    """Metrics of one benchmark from its sample rows: avg@n / pass@k / maj@n with bootstrap CIs, outcome
    counts (correct / wrong / unparsed / timeout: never a silent zero), lengths, truncation, throughput."""
    out = summarize(problem_results(rows))
    out["outcomes"] = outcome_counts(rows)
    out["errors"] = sum("error" in r for r in rows)  # served samples with no answer, graded as such
    out["lenient_verdicts"] = sum(r["extraction"] == "lenient" for r in rows)  # opt-in fallback, see evals.grading.extraction
    out["lengths"] = length_stats([r["num_tokens"] for r in rows], [r["finish_reason"] == "length" for r in rows])
    batches = {r["batch_index"]: (r["gen_seconds"], r["verify_seconds"]) for r in rows}
    gen_s = sum(g for g, _ in batches.values())
    ver_s = sum(v for _, v in batches.values())
    tokens = sum(r["num_tokens"] for r in rows)
    out["throughput"] = {"generated_tokens": tokens, "generation_seconds": round(gen_s, 3),
                         "tokens_per_second": tokens / gen_s if gen_s else None,
                         "verification_seconds": round(ver_s, 3),
                         "graded_per_second": len(rows) / ver_s if ver_s else None}
    if params is not None:
        out["sampling"] = asdict(params)
    return out


def _check_resume(run_dir: Path, identity: dict) -> None:
    path = run_dir / "config.json"
    if not path.exists():
        return
    old = read_json(path).get("identity", {})
    old = {**EvalConfig.identity_absent(), **old}
    diff = {k: (old.get(k), v) for k, v in identity.items() if old.get(k) != v}
    for k in [k for k, (a, b) in diff.items() if isinstance(a, dict) and isinstance(b, dict)]:
        a, b = diff.pop(k)  # name the parts that changed (the served model's weights, tokenizer, chat template)
        diff.update({f"{k}.{j}": (a.get(j), b.get(j)) for j in dict.fromkeys([*a, *b]) if a.get(j) != b.get(j)})
    if diff:
        details = "; ".join(f"{k}: on disk {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise RunMismatchError(f"{path} was written by a different evaluation ({details}). "
                               f"Resume needs the same settings; use another --out directory for a new run.")


def run_eval(cfg: EvalConfig, out_dir: str | Path, *, progress: bool = True, console=None) -> dict:
    """Evaluate `cfg.model` on the configured benchmarks, resuming whatever `out_dir` already holds; the one writer
    of `out_dir` while it runs (evals.runlock: another one gets RunLockedError naming this process)."""
    from evals.runlock import run_lock

    with run_lock(out_dir):
        return _run_eval(cfg, out_dir, progress=progress, console=console)


def _run_eval(cfg: EvalConfig, out_dir: str | Path, *, progress: bool, console) -> dict:
    from dataclasses import replace

    from evals.prompts import template_record
    from evals.models import fingerprint, load_tokenizer, resolve_device, resolve_model, set_threads
    from evals.portable import portable_model
    from evals.grading.verifier import Verifier
    from evals.engines.vllm_engine import resolve_engine

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    if not isinstance(cfg.data_parallel_size, int) or cfg.data_parallel_size < 1:
        raise ValueError(f"data_parallel_size must be a positive integer, got {cfg.data_parallel_size!r}")
    tasks = resolve_tasks(cfg)  # fail on bad names/data before loading anything heavy
    if cfg.base_url and cfg.engine != "openai":
        raise ValueError(f"--base-url is for --engine openai (got --engine {cfg.engine})")
    if cfg.engine == "openai":  # a server generates: `model` is its served name, the tokenizer is optional
        from evals.engines.openai_engine import (OpenAIGenerator, resolve_served, served_eos_ids,
                                                 served_template_record, shown_url)

        if cfg.data_parallel_size > 1:
            raise ValueError("--engine openai: the servers do the data parallelism (vllm serve --data-parallel-size, "
                             "or several --base-url); data_parallel_size must stay 1")
        model_path, tokenizer, api = resolve_served(cfg.model, cfg.tokenizer, cfg.api)
        device, engine = "server", "openai"
        cfg = replace(cfg, api=api, batch_size=cfg.batch_size or ENGINE_BATCH_SIZE[engine])
        identity = {k: getattr(cfg, k) for k in EvalConfig.identity_fields()}
        identity["model"] = {"model": cfg.model, "kind": "served"}  # + what the servers report, checked below
    else:
        model_path = resolve_model(cfg.model)
        device = resolve_device(cfg.device)
        engine = resolve_engine(cfg.engine, model_path, device)
        cfg = replace(cfg, engine=engine, batch_size=cfg.batch_size or ENGINE_BATCH_SIZE[engine])
        identity = {k: getattr(cfg, k) for k in EvalConfig.identity_fields()}
        identity["model"] = fingerprint(model_path)  # the weights, wherever they are
        _check_resume(out_dir, identity)
        set_threads(cfg.threads)
        tokenizer = load_tokenizer(model_path)
    # The graders warm up (imports, parser tables: seconds of CPU) while the engine starts, and are waited for
    # before generation: beside a running CPU engine they would take cores its threads synchronise on.
    verifier = Verifier(workers=cfg.verifier_workers, timeout_s=cfg.verifier_timeout, lenient=cfg.lenient)
    generator = None
    results = {}
    all_rows = []
    try:
        if engine == "openai":
            generator = OpenAIGenerator(openai_settings(cfg), tokenizer, batch_size=cfg.batch_size,
                                        template=cfg.template, eos_ids=served_eos_ids(model_path, tokenizer))
            identity["model"].update(generator.identity())  # the servers' weights, our tokenizer and template
            _check_resume(out_dir, identity)
            cfg = replace(cfg, base_url=[shown_url(u) for u in cfg.base_url])  # no URL secret in any file
            template = (served_template_record(cfg.template) if api == "chat"
                        else template_record(cfg.template, tokenizer))
            shown_model = cfg.model
        else:
            generator = make_eval_generator(cfg, model_path, tokenizer, device)
            template = template_record(cfg.template, tokenizer)
            shown_model = portable_model(cfg.model, model_path, out_dir)  # no machine path in a file a user may commit
        verifier.wait_warm()
        engine_info = generator.engine_record()
        atomic_write_json(out_dir / "config.json", {
            "config": {k: v for k, v in asdict(cfg).items()}, "identity": identity, "model_path": shown_model,
            "device": str(device), "template": template, "engine": engine_info,
            "benchmarks": {t.name: {"n_problems": len(t.problems), "sampling": asdict(t.params)} for t in tasks},
        })
        for task in tasks:
            prompts = [generator.render(p.problem, cfg.template) for p in task.problems]
            rows = evaluate_problems(task.name, task.problems, prompts, task.params, generator, verifier,
                                     out_dir / "samples" / f"{task.name}.jsonl", progress=progress)
            results[task.name] = summarize_rows(rows, task.params)
            # batch seconds are each engine's own: with replicas side by side, tokens/s is per replica
            results[task.name]["throughput"]["engine_replicas"] = cfg.data_parallel_size
            all_rows += rows
    finally:
        verifier.close()
        if generator is not None:  # data-parallel replicas are processes of their own
            generator.close()
    if cfg.audit:  # over the rows on disk, so a resumed run audits everything it reports
        from evals.grading.audit import audit_rows, print_audit, write_audit

        audit, disagreements = audit_rows(all_rows, timeout_s=cfg.verifier_timeout,
                                          workers=cfg.verifier_workers, progress=progress)
        write_audit(out_dir, audit, disagreements)
        for name in results:
            results[name]["audit"] = audit[name]
        if console is not False:
            print_audit(audit, console)
    trained = Path(model_path) / "train_config.json" if model_path else None
    requests = generator.request_stats()  # requests and retries of this invocation (served engines)
    if requests is not None:
        engine_info = {**engine_info, "requests": requests}
    summary = {
        "model": cfg.model, "model_path": shown_model,
        "trained_with": read_json(trained) if trained and trained.exists() else None, "fingerprint": identity["model"],
        "template": template, "config": asdict(cfg), "versions": package_versions(), "device": str(device),
        "engine": engine_info,
        "benchmarks": results, "wall_seconds_this_invocation": round(time.perf_counter() - t_start, 2),
    }
    atomic_write_json(out_dir / "summary.json", summary)
    if console is not False:
        print_summary(summary, console)
    return summary


def openai_settings(cfg: EvalConfig):
    from evals.engines.openai_engine import OpenAISettings

    return OpenAISettings(base_urls=list(cfg.base_url), model=cfg.model, api=cfg.api, api_key_env=cfg.api_key_env,
                          concurrency=cfg.concurrency, request_timeout=cfg.request_timeout,
                          connect_timeout=cfg.connect_timeout, max_retries=cfg.max_retries,
                          retry_time_budget=cfg.retry_time_budget, strip_thinking=cfg.strip_thinking,
                          reasoning_api=cfg.reasoning_api)


def make_eval_generator(cfg: EvalConfig, model_path: str, tokenizer, device):
    """The generation engine `cfg.engine` names (already resolved from auto)."""
    if cfg.engine == "vllm":
        from evals.engines.vllm_engine import VLLMGenerator, VLLMSettings

        settings = VLLMSettings(dtype=cfg.dtype, compile=cfg.compile, kv_cache_gb=cfg.kv_cache_gb,
                                gpu_memory_utilization=cfg.gpu_memory_utilization,
                                tensor_parallel_size=cfg.tensor_parallel_size, threads=cfg.threads, seed=cfg.seed,
                                logprobs=False)  # graded by text: per-token log-probs would cost every step
        if cfg.data_parallel_size > 1:
            from evals.engines.vllm_data_parallel import DataParallelVLLM

            return DataParallelVLLM(model_path, tokenizer, settings, cfg.data_parallel_size,
                                    batch_size=cfg.batch_size, device=str(device))
        return VLLMGenerator(model_path, tokenizer, settings, batch_size=cfg.batch_size, device=device)
    if cfg.data_parallel_size > 1:
        raise ValueError("data_parallel_size > 1 needs the vllm engine (--engine vllm)")
    from evals.engines.hf import HFGenerator
    from evals.models import load_model

    return HFGenerator(load_model(model_path, dtype=cfg.dtype, device=device), tokenizer, batch_size=cfg.batch_size)


def headline_metric(bench: dict) -> str:
    return f"avg@{bench['n_samples']}"


def print_summary(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    import sys

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{summary['model']}  ({summary['template']['name']} template)")
    for col in ("benchmark", "problems", "metric", "score", "95% CI", "pass@k", "maj@k", "unparsed",
                "timeouts", "lenient", "trunc.", "mean len", "tok/s"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for name, b in summary["benchmarks"].items():
        m = headline_metric(b)
        n = b["n_samples"]
        pk = b.get(f"pass@{n}")
        mk = b.get(f"maj@{n}")
        tps = b["throughput"]["tokens_per_second"]
        table.add_row(name, str(b["n_problems"]), m, f"{100 * b[m]['value']:.1f}",
                      f"{100 * b[m]['ci_low']:.1f}-{100 * b[m]['ci_high']:.1f}",
                      f"{100 * pk['value']:.1f}" if pk and n > 1 else "-",
                      f"{100 * mk['value']:.1f}" if mk else "-",
                      str(b["outcomes"]["unparsed"]), str(b["outcomes"]["timeout"]), str(b.get("lenient_verdicts", 0)),
                      f"{100 * b['lengths']['truncation_rate']:.0f}%", f"{b['lengths']['mean_tokens']:.0f}",
                      f"{tps:.0f}" if tps else "-")
    console.print(table)
