"""`tbrm` command line: eval, grade, train, report, reproduce.

Every subcommand validates its arguments and data before loading a model, prints a clear one-line error
(naming file, line and field for bad data) and exits non-zero on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_eval(sub) -> None:
    from evals.prompts import DEFAULT_TEMPLATE, TEMPLATES
    from evals.models import DEFAULT_MODEL

    p = sub.add_parser("eval", help="score a checkpoint on math benchmarks",
                       description="Score a model on math benchmarks through the shared verifier. Kill it at any "
                                   "point and rerun the same command: it resumes where it stopped.")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="HF hub id, local HF directory (e.g. RUN_DIR/checkpoint-N) or bundled short name "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--benchmarks", nargs="*", default=None,
                   help="registry names (math500 aime24 aime25 amc23 minerva olympiadbench gsm8k); "
                        "default math500 unless --data-file is given")
    p.add_argument("--limit", type=int, help="first N problems of each benchmark (a slice)")
    p.add_argument("--data-file", help="a JSONL/Parquet file of your own problems")
    p.add_argument("--problem-field", default="problem")
    p.add_argument("--answer-field", default="answer", help="field path of the gold answer, e.g. final_answer[0]")
    p.add_argument("--id-field")
    p.add_argument("--samples", type=int, help="samples per problem (default: the benchmark's paper default)")
    p.add_argument("--temperature", type=float, help="0 = greedy (default: the benchmark's paper default)")
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-new-tokens", type=int, help="default: the benchmark's (2048, as in the paper)")
    p.add_argument("--template", default=DEFAULT_TEMPLATE, choices=TEMPLATES)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--batch-size", type=int,
                   help="sequences per generation batch, the unit of resume (default: hf 64, vllm 256)")
    _add_engine_args(p)
    p.add_argument("--seed", type=int, default=0)
    _add_grading_flags(p)
    p.add_argument("--verifier-timeout", type=float, default=5.0, help="seconds per answer before 'timeout'")
    p.add_argument("--verifier-workers", type=int)
    p.add_argument("--data-dir", help="benchmark data folder (default: $TBRM_DATA_DIR or ../shared/data)")
    p.add_argument("--out", required=True, help="run directory (created, or resumed if it exists)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_eval)


def _add_engine_args(p) -> None:
    g = p.add_argument_group("generation engine")
    g.add_argument("--engine", default="auto", choices=("hf", "vllm", "auto"),
                   help="hf = transformers generate; vllm = vLLM (3-7x the tokens/s on CPU, more on GPU); auto "
                        "(default) = vllm when it is installed and supports the model on this device")
    g.add_argument("--compile", action="store_true", help="vllm: torch.compile the model (+10-25%% tokens/s, "
                                                          "but about a minute more start-up on CPU)")
    g.add_argument("--kv-cache-gb", type=float, default=4.0, help="vllm on CPU: KV-cache size in GiB")
    g.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vllm on CUDA")
    g.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm on CUDA: GPUs per model")
    g.add_argument("--data-parallel-size", type=int, default=1,
                   help="vllm: engine replicas, each in its own process on its own GPUs (tensor-parallel-size "
                        "each) or, on CPU, its share of the cores; they share the batches (--batch-size: give each "
                        "replica some). Samples do not depend on it, so a run may resume with another value")


def _run_eval(a) -> int:
    from evals.runner import EvalConfig, run_eval

    cfg = EvalConfig(
        model=a.model, benchmarks=a.benchmarks if a.benchmarks is not None else ([] if a.data_file else ["math500"]),
        limit=a.limit, data_file=a.data_file, problem_field=a.problem_field, answer_field=a.answer_field,
        id_field=a.id_field, samples=a.samples, temperature=a.temperature, top_p=a.top_p,
        max_new_tokens=a.max_new_tokens, template=a.template, dtype=a.dtype, device=a.device, threads=a.threads,
        batch_size=a.batch_size, seed=a.seed, lenient=a.lenient, audit=a.audit, engine=a.engine,
        compile=a.compile, kv_cache_gb=a.kv_cache_gb, gpu_memory_utilization=a.gpu_memory_utilization,
        tensor_parallel_size=a.tensor_parallel_size, data_parallel_size=a.data_parallel_size,
        verifier_timeout=a.verifier_timeout, verifier_workers=a.verifier_workers, data_dir=a.data_dir)
    run_eval(cfg, a.out, progress=not a.no_progress)
    print(f"results: {Path(a.out) / 'summary.json'}")
    return 0


def _add_grading_flags(p) -> None:
    p.add_argument("--lenient", action="store_true",
                   help="where Math-Verify finds no answer, take the last 'answer is X' phrase or the last number "
                        "(for small models that never box); such verdicts are flagged 'lenient' and counted. "
                        "Off by default: benchmark scores should not depend on it")
    p.add_argument("--audit", action="store_true",
                   help="also grade every answer with plain Math-Verify and report where the two disagree, how "
                        "many verdicts flip and how far each score moves (audit.json, audit_disagreements.jsonl)")


def _add_grade(sub) -> None:
    p = sub.add_parser("grade", help="score generations made elsewhere with the shared verifier",
                       description="Grade a JSONL/Parquet file of responses (e.g. from vLLM or another harness) "
                                   "against gold answers with the same verifier `tbrm eval` and training use.")
    p.add_argument("file")
    p.add_argument("--response-field", default="response")
    p.add_argument("--answer-field", default="answer", help="gold answer field path, e.g. final_answer[0]")
    p.add_argument("--id-field", help="problem id field; rows sharing an id are samples of one problem "
                                      "(default: each row is its own problem)")
    _add_grading_flags(p)
    p.add_argument("--verifier-timeout", type=float, default=5.0)
    p.add_argument("--verifier-workers", type=int)
    p.add_argument("--out", help="output folder (default: FILE's folder / FILE-stem.graded)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_grade)


def _run_grade(a) -> int:
    from evals.grade import grade_file

    out = a.out or str(Path(a.file).with_name(Path(a.file).stem + ".graded"))
    grade_file(a.file, response_field=a.response_field, answer_field=a.answer_field, id_field=a.id_field,
               out_dir=out, lenient=a.lenient, audit=a.audit, timeout_s=a.verifier_timeout,
               workers=a.verifier_workers, progress=not a.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbrm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_eval(sub)
    _add_grade(sub)
    for extra in ("tbrm.train_cli", "reports.cli"):
        try:
            mod = __import__(extra, fromlist=["add_parsers"])
        except ModuleNotFoundError as e:
            if e.name != extra:
                raise
            continue
        mod.add_parsers(sub)
    # `tbrm verl ...` is dispatched in main() to tbrm_verl (optional extra [verl], its own environment);
    # listed here for --help only.
    sub.add_parser("verl", help="run a paper recipe at scale on verl (extra [verl]); `tbrm verl --help`",
                   add_help=False)
    return parser


# Errors that are the user's input, not our bug: print one clear line, exit 2.
def _user_errors() -> tuple[type[BaseException], ...]:
    from evals.benchmarks import DataError
    from evals.runner import RunMismatchError
    from evals.io import CorruptFileError
    from evals.models import ModelNotAvailableError

    errs = [DataError, RunMismatchError, CorruptFileError, ModelNotAvailableError, FileNotFoundError, KeyError,
            ValueError]
    try:
        from tbrm.config import ConfigError

        errs.append(ConfigError)
    except ImportError:
        pass
    return tuple(errs)


def main(argv: list[str] | None = None) -> int:
    from evals.vllm_generation import EngineError

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verl"]:
        from tbrm_verl.cli import main as verl_main

        return verl_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except _user_errors() as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"tbrm {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except EngineError as e:  # the engine died: say so in one line instead of a vLLM traceback (or a hang)
        print(f"tbrm {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ntbrm {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
