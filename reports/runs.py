"""Load and validate run directories for `tbrm report`.

Two kinds, told apart by their files:

* eval run (`tbrm eval`): ``summary.json`` + ``samples/<bench>.jsonl`` (+ ``config.json``);
* train run (`tbrm train`): ``train_config.json`` + ``metrics.jsonl`` (+ ``checkpoint-N/``, ``evals/``).

Everything a report shows is checked here first, so a bad, missing or corrupt file fails with one clear error
naming the file (and line), never with a traceback from deep inside a table or a plot. Reading never modifies
a run (`torn_tail="skip"`, where a writer resuming its own run repairs it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.io import CorruptFileError, read_json, read_jsonl_numbered



@dataclass
class BenchResult:
    """One benchmark of one eval run."""

    name: str
    n_problems: int
    n_samples: int
    metrics: dict[str, dict]  # "avg@n", "pass@k", "maj@n" -> {"value", "ci_low", "ci_high"} (from summary.json)
    sampling: dict[str, Any]  # n, temperature, top_p, max_new_tokens (as evaluated)
    template: str  # effective prompt template
    scores: dict[str, float]  # problem_id -> mean correctness over its samples (from samples/<bench>.jsonl)
    ci_level: float  # level of the summary's bootstrap CIs
    samples_path: Path

    def metric(self, kind: str = "avg") -> tuple[str, dict]:
        """The headline metric of this benchmark: avg@n, pass@n or maj@n (maj falls back to avg for n=1)."""
        n = self.n_samples
        name = {"avg": f"avg@{n}", "pass": f"pass@{n}", "maj": f"maj@{n}" if n > 1 else f"avg@{n}"}[kind]
        if name not in self.metrics:
            raise ValueError(f"{self.samples_path.parent.parent / 'summary.json'}: benchmark {self.name!r} has no "
                             f"{name!r} metric")
        return name, self.metrics[name]


@dataclass
class EvalRun:
    path: Path
    model: str  # --model as given
    model_path: str
    fingerprint: dict
    base_model: str  # short name of the base model (the model itself for a base run)
    method: str | None  # "TBRM n=1" ... for a trained checkpoint, None for a base model
    checkpoint_step: int | None
    final_step: int | None  # the training run's configured steps (to flag intermediate checkpoints)
    benchmarks: dict[str, BenchResult]
    versions: dict
    trained: dict | None = None  # train_config of the checkpoint (None for a base model): seeds group by it
    label: str = ""
    user_label: str | None = None
    notes: list[str] = field(default_factory=list)
    display: str = ""  # how reports name the run folder: relative to the report, or a label (evals.portable)
    group_label: str = ""  # the label without the run folder that tells duplicates apart (a method's seeds share it)

    kind = "eval"

    @property
    def is_base(self) -> bool:
        return self.method is None

    @property
    def identity(self) -> str:
        """Which model was scored: runs of the same model merge into one table row."""
        return json.dumps(self.fingerprint, sort_keys=True)


@dataclass
class TrainRun:
    path: Path
    config: dict
    method: str
    base_model: str
    rows: list[dict]  # metrics.jsonl, one row per step (step 0 = the initial held-out evaluation)
    label: str = ""
    user_label: str | None = None
    notes: list[str] = field(default_factory=list)
    display: str = ""  # how reports name the run folder: relative to the report, or a label (evals.portable)
    group_label: str = ""  # the label without the run folder that tells duplicates apart (a method's seeds share it)

    kind = "train"

    @property
    def steps_done(self) -> int:
        return max((r["step"] for r in self.rows), default=0)

    @property
    def eval_names(self) -> list[str]:
        names: list[str] = []
        for r in self.rows:
            for k in r:
                if k.startswith("eval/") and k.endswith("/accuracy") and k[5:-9] not in names:
                    names.append(k[5:-9])
        return names


# ---------------------------------------------------------------------------------------------------- helpers


def method_label(train_config: dict, where: Path) -> str:
    from baselines.registry import algorithms, method_label as registry_label

    label = registry_label(train_config)  # the algorithm's class names its method and variant (ReVal's options)
    if label is None:
        raise ValueError(f"{where}: needs 'algorithm' ({'/'.join(algorithms())}) and an integer "
                         f"'rollouts_per_prompt', got {train_config.get('algorithm')!r} and "
                         f"{train_config.get('rollouts_per_prompt')!r}")
    if train_config.get("offline_trajectories"):  # off-policy TBRM: which fixed file it learned from
        label += f" off-policy ({Path(str(train_config['offline_trajectories'])).stem})"
    return label


def short_model_name(name: str) -> str:
    """'smollm2' -> 'smollm2-135m-instruct', 'Qwen/Qwen2.5-Math-1.5B' -> 'Qwen2.5-Math-1.5B', a path -> its
    folder name."""
    from evals.models import ALIASES

    name = ALIASES.get(name, name)
    return Path(name.rstrip("/")).name or name


def _need(obj: Any, key: str, types, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    val = obj[key]
    if types is not None and (not isinstance(val, types) or isinstance(val, bool)):
        raise ValueError(f"{where}: field {key!r} has the wrong type ({type(val).__name__}: {val!r})")
    return val


def _read_json_dict(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path}: expected a JSON object")
    return obj


# ---------------------------------------------------------------------------------------------------- eval runs


def _find_model_dir(model_path: str, run_dir: Path) -> Path | None:
    p = Path(model_path).expanduser()
    # eval runs record a local model relative to the run folder (evals.portable); older ones as given
    for cand in ([p] if p.is_absolute() else [run_dir / p, Path.cwd() / p, run_dir.parent / p]):
        if cand.is_dir():
            return cand
    return None


def _is_bundled(name: str) -> bool:
    from evals.models import ALIASES, BUNDLED

    return ALIASES.get(name, name) in BUNDLED or Path(name).name in BUNDLED


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def _load_bench(run_dir: Path, name: str, b: dict, summary_path: Path, template: str) -> BenchResult:
    where = f"{summary_path} (benchmark {name!r})"
    n_problems = _need(b, "n_problems", int, where)
    n_samples = _need(b, "n_samples", int, where)
    metrics = {k: v for k, v in b.items() if k.split("@")[0] in ("avg", "pass", "maj") and "@" in k}
    head = f"avg@{n_samples}"
    m = _need(b, head, dict, where)
    for k in ("value", "ci_low", "ci_high"):
        _need(m, k, (int, float), f"{where}, {head}")
    sampling = b.get("sampling") or {}
    sampling = {"n": sampling.get("n", n_samples), "temperature": sampling.get("temperature"),
                "top_p": sampling.get("top_p"), "max_new_tokens": sampling.get("max_new_tokens")}
    ci_level = 1.0 - float((b.get("bootstrap") or {}).get("alpha", 0.05))

    spath = run_dir / "samples" / f"{name}.jsonl"
    if not spath.is_file():
        raise FileNotFoundError(f"{spath}: no such file")
    rows, _ = read_jsonl_numbered(spath, torn_tail="raise")
    per: dict[str, dict[int, bool]] = {}
    for line, r in rows:
        at = f"{spath}:{line}"
        pid = _need(r, "problem_id", str, at)
        si = _need(r, "sample_index", int, at)
        outcome = _need(r, "outcome", str, at)
        if si in per.setdefault(pid, {}):
            raise CorruptFileError(f"{at}: duplicate sample {si} of problem {pid!r}")
        per[pid][si] = outcome == "correct"
    if len(per) != n_problems:
        raise CorruptFileError(f"{spath} holds {len(per)} problems but {summary_path} says {n_problems}: the "
                               f"files do not belong together (or the run was edited)")
    bad = [pid for pid, s in per.items() if sorted(s) != list(range(n_samples))]
    if bad:
        raise CorruptFileError(f"{spath}: problem {bad[0]!r} has samples {sorted(per[bad[0]])}, expected "
                               f"0..{n_samples - 1} as in {summary_path}")
    scores = {pid: sum(s.values()) / n_samples for pid, s in per.items()}
    mean = sum(scores.values()) / max(len(scores), 1)
    if abs(mean - m["value"]) > 1e-9:
        raise CorruptFileError(f"{spath} gives {head} = {mean:.6g} but {summary_path} says {m['value']:.6g}: the "
                               f"files do not belong together (or the run was edited)")
    return BenchResult(name, n_problems, n_samples, metrics, sampling, template, scores, ci_level, spath)


def load_eval_run(run_dir: Path) -> EvalRun:
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        hint = (" (config.json is there: the evaluation has not finished; rerun the same `tbrm eval` command to "
                "resume it)" if (run_dir / "config.json").is_file() else "")
        raise FileNotFoundError(f"{summary_path}: no such file{hint}")
    s = _read_json_dict(summary_path)
    where = str(summary_path)
    model = _need(s, "model", str, where)
    model_path = _need(s, "model_path", str, where)
    benches = _need(s, "benchmarks", dict, where)
    if not benches:
        raise ValueError(f"{summary_path}: no benchmarks")
    tmpl = s.get("template") or {}
    template = tmpl.get("effective") or tmpl.get("name") or "?"
    notes: list[str] = []
    method = checkpoint_step = final_step = None
    tc: dict | None = None  # the checkpoint's train_config, when it is a trained checkpoint
    base = short_model_name(model)
    mdir = _find_model_dir(model_path, run_dir)
    recorded = s.get("trained_with") if isinstance(s.get("trained_with"), dict) else None
    if (mdir is not None and (mdir / "train_config.json").is_file()) or recorded:
        # the checkpoint's own train_config wins; the copy in the summary keeps a moved checkpoint's label
        reachable = mdir is not None and (mdir / "train_config.json").is_file()
        tc = _read_json_dict(mdir / "train_config.json") if reachable else recorded
        method = method_label(tc, mdir / "train_config.json" if reachable else summary_path)
        base = short_model_name(str(tc.get("model", "?")))
        name = Path(model_path).name
        tail = name.split("-")[-1]
        checkpoint_step = int(tail) if name.startswith("checkpoint-") and tail.isdigit() else None
        final_step = tc.get("steps") if isinstance(tc.get("steps"), int) else None
    elif mdir is None and not _looks_like_hub_id(model_path) and not _is_bundled(model_path):
        notes.append(f"{run_dir}: model {model_path} not found from here, so whether it is a trained checkpoint "
                     f"(and of which method) is unknown; it is shown under its path name")
        method = short_model_name(model_path)
    benchmarks = {name: _load_bench(run_dir, name, b, summary_path, template) for name, b in benches.items()}
    return EvalRun(run_dir, model, model_path, s.get("fingerprint") or {"model": model_path}, base, method,
                   checkpoint_step, final_step, benchmarks, s.get("versions") or {}, trained=tc, notes=notes)


# ---------------------------------------------------------------------------------------------------- train runs


def load_train_run(run_dir: Path) -> TrainRun:
    cpath = run_dir / "train_config.json"
    cfg = _read_json_dict(cpath)
    method = method_label(cfg, cpath)
    mpath = run_dir / "metrics.jsonl"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath}: no such file")
    rows, torn = read_jsonl_numbered(mpath, torn_tail="skip")
    notes = [f"{mpath}: skipped a torn last line (the run was stopped mid-write)"] if torn else []
    out: list[dict] = []
    last = -1
    for line, r in rows:
        step = _need(r, "step", int, f"{mpath}:{line}")
        if step <= last:
            raise CorruptFileError(f"{mpath}:{line}: step {step} after step {last}; steps must increase")
        for k, v in r.items():
            if v is not None and not isinstance(v, (int, float)):
                raise CorruptFileError(f"{mpath}:{line}: field {k!r} is not a number ({v!r})")
        last = step
        out.append(r)
    if not any(r["step"] > 0 for r in out):
        raise ValueError(f"{mpath}: no training steps logged yet")
    if out[-1]["step"] < int(cfg.get("steps", 0)):
        notes.append(f"{run_dir}: {out[-1]['step']} of {cfg.get('steps')} steps done (run unfinished or stopped)")
    return TrainRun(run_dir, cfg, method, short_model_name(str(cfg.get("model", "?"))), out, notes=notes)


def load_run(path: str | Path) -> EvalRun | TrainRun:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    if (run_dir / "train_config.json").is_file():
        return load_train_run(run_dir)
    if (run_dir / "summary.json").is_file() or (run_dir / "config.json").is_file():
        return load_eval_run(run_dir)
    raise FileNotFoundError(f"{run_dir}: not a run directory: expected summary.json (from `tbrm eval`) or "
                            f"train_config.json + metrics.jsonl (from `tbrm train`)")


def parse_labels(specs: list[str] | None, run_dirs: list[str]) -> dict[Path, str]:
    """`--label RUN_DIR=NAME` pairs -> {resolved run dir: name}; each RUN_DIR must be one of the inputs."""
    inputs = {Path(d).resolve(): d for d in run_dirs}
    out: dict[Path, str] = {}
    for spec in specs or []:
        d, sep, name = spec.rpartition("=")
        if not sep or not d or not name.strip():
            raise ValueError(f"--label {spec!r}: expected RUN_DIR=NAME")
        key = Path(d).resolve()
        if key not in inputs:
            raise ValueError(f"--label {spec!r}: {d} is not one of the run directories given")
        out[key] = name.strip()
    return out


def load_runs(run_dirs: list[str], labels: list[str] | None = None) -> tuple[list[EvalRun], list[TrainRun]]:
    if not run_dirs:
        raise ValueError("no run directories given")
    seen: set[Path] = set()
    user = parse_labels(labels, run_dirs)
    evals: list[EvalRun] = []
    trains: list[TrainRun] = []
    for d in run_dirs:
        key = Path(d).resolve()
        if key in seen:
            raise ValueError(f"{d}: given twice")
        seen.add(key)
        run = load_run(d)
        run.user_label = user.get(key)
        (evals if isinstance(run, EvalRun) else trains).append(run)
    _assign_labels(evals, trains)
    return evals, trains


def _assign_labels(evals: list[EvalRun], trains: list[TrainRun]) -> None:
    """Method labels ("TBRM n=1"; the base model's name for a base run), with the base model added when runs
    start from different models, a step for an intermediate checkpoint, and the run folder for duplicates
    (eval runs of the same model merge into one row later, so they may share a label)."""
    bases = {r.base_model for r in [*evals, *trains]}
    # "@ step N" marks an intermediate checkpoint, unless every evaluation of that method is at step N and one of
    # them is a run's final step: then the others are the same point of longer runs (the schedule is constant
    # after warm-up, so checkpoint-20 of a 40-step run is a 20-step run's final one), e.g. seeds that `tbrm
    # reproduce --preset cpu-full` continued, and they share a row
    steps: dict[str, set[int]] = {}
    final_at: dict[str, bool] = {}
    for r in evals:
        step, final = getattr(r, "checkpoint_step", None), getattr(r, "final_step", None)
        if r.method and step is not None:
            steps.setdefault(r.method, set()).add(step)
            final_at[r.method] = final_at.get(r.method, False) or step == final
    for r in [*evals, *trains]:
        if r.user_label:
            r.label = r.user_label
            continue
        if isinstance(r, EvalRun) and r.is_base:
            r.label = f"{r.base_model} (base)"
            continue
        label = r.method or "?"
        step, final = getattr(r, "checkpoint_step", None), getattr(r, "final_step", None)
        if step is not None and final and step < final and (len(steps.get(r.method, ())) > 1
                                                            or not final_at.get(r.method, False)):
            label += f" @ step {step}"
        if len(bases) > 1:
            label += f" ({r.base_model})"
        r.label = label
    for r in [*evals, *trains]:
        r.group_label = r.label
    counts: dict[str, int] = {}
    for t in trains:
        counts[t.label] = counts.get(t.label, 0) + 1
    for t in trains:
        if counts[t.label] > 1 and not t.user_label:
            t.label = f"{t.label} [{t.path.name}]"
