"""`tbrm` command line: eval, grade, train, report, reproduce.

Every subcommand validates its arguments and data before loading a model, prints a clear one-line error
(naming file, line and field for bad data) and exits non-zero on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_eval(sub) -> None:
    from evals.dataclass_args import add_dataclass_arguments
    from evals.runner import EvalConfig

    p = sub.add_parser("eval", help="score a checkpoint on math benchmarks",
                       description="Score a model on math benchmarks through the shared verifier. Kill it at any "
                                   "point and rerun the same command: it resumes where it stopped.")
    add_dataclass_arguments(p, EvalConfig)  # one flag per EvalConfig field, with the field's default and help
    p.add_argument("--out", required=True, help="run directory (created, or resumed if it exists)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_eval)


def _run_eval(a) -> int:
    from dataclasses import fields

    from evals.runner import EvalConfig
    from tbrm import api

    api.evaluate(out=a.out, progress=not a.no_progress, **{f.name: getattr(a, f.name) for f in fields(EvalConfig)})
    print(f"results: {Path(a.out) / 'summary.json'}")
    return 0


def _add_grade(sub) -> None:
    from evals.dataclass_args import add_dataclass_arguments
    from evals.runner import EvalConfig  # the grading flags, shared with `tbrm eval`

    p = sub.add_parser("grade", help="score generations made elsewhere with the shared verifier",
                       description="Grade a JSONL/Parquet file of responses (e.g. from vLLM or another harness) "
                                   "against gold answers with the same verifier `tbrm eval` and training use.")
    p.add_argument("file")
    p.add_argument("--response-field", default="response")
    p.add_argument("--answer-field", default="answer", help="gold answer field path, e.g. final_answer[0]")
    p.add_argument("--id-field", help="problem id field; rows sharing an id are samples of one problem "
                                      "(default: each row is its own problem)")
    add_dataclass_arguments(p, EvalConfig, only=("lenient", "audit", "verifier_timeout", "verifier_workers"))
    p.add_argument("--out", help="output folder (default: FILE's folder / FILE-stem.graded)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_grade)


def _run_grade(a) -> int:
    from tbrm import api

    api.grade(a.file, out=a.out, response_field=a.response_field, answer_field=a.answer_field, id_field=a.id_field,
              lenient=a.lenient, audit=a.audit, verifier_timeout=a.verifier_timeout,
              verifier_workers=a.verifier_workers, progress=not a.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbrm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_eval(sub)
    _add_grade(sub)
    from reports import cli as reports_cli
    from tbrm import train_cli

    train_cli.add_parsers(sub)
    reports_cli.add_parsers(sub)
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
    from evals.runlock import RunLockedError

    errs = [DataError, RunMismatchError, CorruptFileError, ModelNotAvailableError, RunLockedError, FileNotFoundError,
            KeyError, ValueError]
    try:
        from tbrm.config import ConfigError

        errs.append(ConfigError)
    except ImportError:
        pass
    return tuple(errs)


def main(argv: list[str] | None = None) -> int:
    from evals.engines.base import EngineError

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
