"""Benchmark registry and loaders: local JSONL/Parquet files or the Hugging Face hub, turned into `Problem`s.

Every source goes through one code path, `problems_from_records`, which pulls the problem text, the gold
answer (via a field path such as ``final_answer[0]`` and a named gold rule such as ``last_boxed``) and an id
from each record, and raises `DataError` naming file, 1-based line (or row) and field on any defect.

The registry (`BENCHMARKS`) carries, per benchmark, both the field mapping of the local file under
`data_dir()` and that of its hub dataset (their field names differ), plus the paper's sampling defaults
(TBRM, arXiv 2505.15311: AIME24/AIME25/AMC23 avg@32 at temperature 1.0, the others greedy avg@1).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from evals.grading.latex import last_boxed
from evals.problem import Problem

DATA_DIR_ENV = "TBRM_DATA_DIR"
SOURCES = ("auto", "local", "hub")


class DataError(ValueError):
    """A defect in a data file: `path`, 1-based `line` (row number for Parquet / hub rows) and `field`
    (None when the whole line is bad)."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, reason: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" field '{field}':" if field is not None else ""
        super().__init__(f"{where}:{what} {reason}")


class DataDirNotFound(FileNotFoundError):
    """No benchmark data directory could be found (or the one named does not exist)."""


# --------------------------------------------------------------------------------------------------------
# Data directory
# --------------------------------------------------------------------------------------------------------

_HOW_TO_SET = (
    f"set the environment variable {DATA_DIR_ENV}=/path/to/data (a folder holding math500/, aime24/, ...) "
    f"or pass --data-dir (data_dir=... in Python)"
)


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where the benchmark files live.

    Order: ``$TBRM_DATA_DIR`` if set (it must exist); else ``<repo root>/../shared/data``; else
    ``./../shared/data`` relative to the current directory. Raises `DataDirNotFound` saying how to set it.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataDirNotFound(f"{DATA_DIR_ENV}={env!r} is not a directory; {_HOW_TO_SET}")
        return p
    candidates = [_repo_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for p in candidates:
        if p.is_dir():
            return p
    tried = ", ".join(dict.fromkeys(str(p) for p in candidates))
    raise DataDirNotFound(f"no benchmark data directory found (tried {tried}); {_HOW_TO_SET}")


# --------------------------------------------------------------------------------------------------------
# Field paths and gold rules
# --------------------------------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[-?\d+\])*)")


def parse_field_path(path: str) -> tuple[str | int, ...]:
    """``"final_answer[0]"`` -> ``("final_answer", 0)``; ``"meta.gold"`` -> ``("meta", "gold")``."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"field path must be a non-empty string, got {path!r}")
    parts: list[str | int] = []
    for segment in path.split("."):
        m = _SEGMENT.fullmatch(segment)
        if m is None:
            raise ValueError(f"bad field path {path!r}: use names joined by '.', each optionally followed by [index]")
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(-?\d+)\]", m.group(2)))
    return tuple(parts)


_MISSING = object()


def _get_path(record: Mapping[str, Any], path: str) -> Any:
    """Value at `path` in `record`, `_MISSING` when absent. Raises ValueError (a reason) on a type clash."""
    if path in record:  # a literal key that happens to contain '.' or '[' wins
        return record[path]
    value: Any = record
    walked = ""
    for part in parse_field_path(path):
        if isinstance(part, str):
            if not isinstance(value, Mapping):
                raise ValueError(f"expected an object at '{walked}', got {type(value).__name__}")
            if part not in value:
                return _MISSING
            value = value[part]
            walked = f"{walked}.{part}" if walked else part
        else:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__getitem__") or not hasattr(value, "__len__"):
                raise ValueError(f"expected a list at '{walked}', got {type(value).__name__}")
            if not -len(value) <= part < len(value):
                raise ValueError(f"missing: index {part} out of range for '{walked}' of length {len(value)}")
            value = value[part]
            walked = f"{walked}[{part}]"
    return value


def _scalar_to_str(value: Any) -> str:
    """A gold value as a string: strings as they are, ints as digits, floats via repr (27.0 -> "27.0")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a string or number, got bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    # numpy scalars (pyarrow/pandas) without importing numpy
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return _scalar_to_str(value.item())
    raise ValueError(f"expected a string or number, got {type(value).__name__}")


def field_value(record: Any, field: str, *, path: str | os.PathLike, line: int | None,
                kind: str = "value") -> Any:
    """The value at field path `field` of one record, validated for its `kind`; `DataError` naming
    `path`, `line` and `field` otherwise.

    kind: "problem" -> non-empty string (stripped); "answer" -> non-empty string (numbers converted: 70 ->
    "70", 27.0 -> "27.0"; stripped); "id" -> non-empty string; "response" -> a string, empty allowed (an
    empty generation is a wrong answer, not bad data); anything else -> the raw value (not null).
    """
    if not isinstance(record, Mapping):
        raise DataError(path, line, None, f"expected a JSON object, got {type(record).__name__}")
    try:
        value = _get_path(record, field)
    except ValueError as e:
        raise DataError(path, line, field, str(e)) from None
    if value is _MISSING:
        raise DataError(path, line, field, "missing")
    if value is None:
        raise DataError(path, line, field, "missing (null)")
    if kind in ("problem", "response"):
        if not isinstance(value, str):
            raise DataError(path, line, field, f"expected a string, got {type(value).__name__}")
        if kind == "problem":
            value = value.strip()
            if not value:
                raise DataError(path, line, field, "empty problem text")
    elif kind in ("answer", "id"):
        try:
            value = _scalar_to_str(value).strip()
        except ValueError as e:
            raise DataError(path, line, field, str(e)) from None
        if not value:
            raise DataError(path, line, field, f"empty {kind}")
    return value


def _gold_plain(value: Any) -> str:
    return _scalar_to_str(value)


def _gold_after_hashes(value: Any) -> str:
    """GSM8K: the text after the last ``####``; thousands commas are kept for the verifier."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string with a '#### ' answer line, got {type(value).__name__}")
    if "####" not in value:
        raise ValueError("no '#### ' answer marker")
    return value.rsplit("####", 1)[1]


def _gold_last_boxed(value: Any) -> str:
    """Minerva / MATH: the content of the last ``\\boxed{}`` in the solution."""
    if not isinstance(value, str):
        raise ValueError(f"expected a solution string, got {type(value).__name__}")
    boxed = last_boxed(value)
    if boxed is None:
        raise ValueError("no \\boxed{} in the solution")
    return boxed


def _gold_strip_dollars(value: Any) -> str:
    """OlympiadBench: ``"$2^{1009}$"`` -> ``"2^{1009}"``."""
    return _scalar_to_str(value).strip().strip("$")


GOLD_RULES: dict[str, Callable[[Any], str]] = {
    "plain": _gold_plain,
    "after_hashes": _gold_after_hashes,
    "last_boxed": _gold_last_boxed,
    "strip_dollars": _gold_strip_dollars,
}


@dataclass(frozen=True)
class FieldMap:
    """How to read one source: problem text field, gold field path plus gold rule (a `GOLD_RULES` name),
    and the id field (None: the 0-based record index is the id)."""

    problem: str
    answer: str
    id: str | None = None
    gold: str = "plain"

    def __post_init__(self):
        if self.gold not in GOLD_RULES:
            raise ValueError(f"unknown gold rule {self.gold!r}; known: {', '.join(GOLD_RULES)}")
        for p in (self.problem, self.answer) + ((self.id,) if self.id is not None else ()):
            parse_field_path(p)


# --------------------------------------------------------------------------------------------------------
# Records -> Problems (shared by files and the hub)
# --------------------------------------------------------------------------------------------------------


def _check_limit(limit: Any) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")


def problems_from_records(
    records: Iterable[tuple[int, Any]],
    *,
    fields: FieldMap,
    name: str,
    origin: str,
    source_of: Callable[[int], str] | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Turn ``(line, record)`` pairs (line 1-based) into Problems, validating each one.

    `origin` is the file path / hub name used in errors; `source_of(line)` gives `Problem.source`
    (default ``"origin:line"``). Ids are ``f"{name}/{id}"`` with id from `fields.id`, else the 0-based
    record index. Problem text is stripped of surrounding whitespace; so is the gold.
    """
    _check_limit(limit)
    rule = GOLD_RULES[fields.gold]
    source_of = source_of or (lambda line: f"{origin}:{line}")
    top_keys = {parse_field_path(p)[0] for p in (fields.problem, fields.answer, fields.id) if p is not None}
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for index, (line, record) in enumerate(records):
        if limit is not None and len(out) >= limit:
            break
        problem = field_value(record, fields.problem, path=origin, line=line, kind="problem")
        raw = field_value(record, fields.answer, path=origin, line=line)
        try:
            answer = rule(raw).strip()
        except ValueError as e:
            raise DataError(origin, line, fields.answer, str(e)) from None
        if not answer:
            raise DataError(origin, line, fields.answer, "empty answer")
        if fields.id is not None:
            pid = field_value(record, fields.id, path=origin, line=line, kind="id")
        else:
            pid = str(index)
        if pid in seen:
            raise DataError(origin, line, fields.id or "id",
                            f"duplicate id {pid!r} (first seen at line {seen[pid]})")
        seen[pid] = line

        meta = {k: v for k, v in record.items() if k not in top_keys}
        out.append(Problem(id=f"{name}/{pid}", problem=problem, answer=answer, source=source_of(line), meta=meta))
    return out


# --------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, line_no, None, f"bad JSON: {e.msg} (column {e.colno})") from None


def _iter_json(path: Path) -> Iterable[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"bad JSON: {e.msg} (column {e.colno})") from None
    if not isinstance(data, list):
        raise DataError(path, None, None, f"a .json file must hold a list of records, got {type(data).__name__}")
    # "line" is the 1-based position in the list
    return enumerate(data, start=1)


def _iter_parquet(path: Path) -> Iterable[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for unreadable files
        raise DataError(path, None, None, f"cannot read Parquet: {e}") from None
    return enumerate(rows, start=1)


_READERS = {".jsonl": _iter_jsonl, ".ndjson": _iter_jsonl, ".json": _iter_json, ".parquet": _iter_parquet}


def read_records(path: str | os.PathLike) -> Iterable[tuple[int, Any]]:
    """``(line, record)`` pairs of a JSONL (blank lines skipped, physical 1-based line numbers kept),
    JSON-list (1-based list position) or Parquet (1-based row) file, chosen by suffix. Bad JSON raises
    `DataError` when its line is reached."""
    p = Path(path)
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise ValueError(f"{p}: unsupported file type {p.suffix!r}; use one of {', '.join(_READERS)}")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    return reader(p)


def load_problems_file(
    path: str | os.PathLike,
    *,
    problem_field: str,
    answer_field: str,
    id_field: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    gold: str = "plain",
) -> list[Problem]:
    """Load any JSONL / JSON-list / Parquet file (chosen by suffix) into Problems.

    `answer_field` is a field path (``answer``, ``final_answer[0]``, ``meta.gold``); `gold` names a rule in
    `GOLD_RULES` applied to it (``plain``, ``after_hashes``, ``last_boxed``, ``strip_dollars``). Ids are
    ``f"{name}/{id}"`` with `name` defaulting to the file stem and id to the 0-based record index.
    Raises `DataError` (file, 1-based line or Parquet row, field) on bad JSON, a missing field, an empty or
    non-string problem, an empty answer, or a duplicate id.
    """
    p = Path(path)
    fields = FieldMap(problem=problem_field, answer=answer_field, id=id_field, gold=gold)
    return problems_from_records(read_records(p), fields=fields, name=name or p.stem, origin=str(p), limit=limit)


# --------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: where its data lives (local file under `data_dir()`, or the hub) and how to read it,
    plus the TBRM paper's evaluation defaults (`samples` at `temperature`, reported as avg@samples)."""

    name: str
    hub_id: str
    hub_config: str | None
    hub_split: str
    hub_fields: FieldMap
    local_file: str  # relative to data_dir()
    local_fields: FieldMap
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 2048


_SAMPLED = dict(samples=32, temperature=1.0)

BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in [
        # MATH500: the 500-problem MATH test split of 'Let's Verify Step by Step' (prm800k).
        BenchmarkSpec(
            name="math500",
            hub_id="HuggingFaceH4/MATH-500", hub_config=None, hub_split="test",
            hub_fields=FieldMap("problem", "answer", "unique_id"),
            local_file="math500/test.jsonl", local_fields=FieldMap("problem", "answer", "unique_id"),
        ),
        # AIME 2024 I+II (30 problems); golds are zero-padded strings such as '025'.
        BenchmarkSpec(
            name="aime24",
            hub_id="HuggingFaceH4/aime_2024", hub_config=None, hub_split="train",
            hub_fields=FieldMap("problem", "answer", "id"),
            local_file="aime24/test.jsonl", local_fields=FieldMap("problem", "answer", "id"),
            **_SAMPLED,
        ),
        # AIME 2025 I+II (30 problems), MathArena text (free of the control-character defects of the AReaL copy).
        BenchmarkSpec(
            name="aime25",
            hub_id="math-ai/aime25", hub_config=None, hub_split="test",
            hub_fields=FieldMap("problem", "answer", None),
            local_file="aime25/test_matharena.jsonl", local_fields=FieldMap("problem", "answer", "id"),
            **_SAMPLED,
        ),
        # AMC 2023 (40 problems rewritten with numeric answers); golds are floats such as '27.0'.
        BenchmarkSpec(
            name="amc23",
            hub_id="math-ai/amc23", hub_config=None, hub_split="test",
            hub_fields=FieldMap("question", "answer", None),
            local_file="amc23/test.jsonl", local_fields=FieldMap("problem", "answer", "id"),
            **_SAMPLED,
        ),
        # Minerva Math / MIT OCW (272 problems); gold = last \boxed{} of the solution.
        BenchmarkSpec(
            name="minerva",
            hub_id="math-ai/minervamath", hub_config=None, hub_split="test",
            hub_fields=FieldMap("question", "answer", None),
            local_file="minerva_math/test.jsonl", local_fields=FieldMap("problem", "solution", "idx", "last_boxed"),
        ),
        # OlympiadBench OE_TO_maths_en_COMP (675 text-only problems); gold = final_answer[0] without '$'.
        BenchmarkSpec(
            name="olympiadbench",
            hub_id="math-ai/olympiadbench", hub_config=None, hub_split="test",
            hub_fields=FieldMap("question", "final_answer[0]", None, "strip_dollars"),
            local_file="olympiadbench/test.jsonl",
            local_fields=FieldMap("question", "final_answer[0]", "id", "strip_dollars"),
        ),
        # GSM8K test (1319 problems); gold = text after '#### ' (thousands commas kept).
        BenchmarkSpec(
            name="gsm8k",
            hub_id="openai/gsm8k", hub_config="main", hub_split="test",
            hub_fields=FieldMap("question", "answer", None, "after_hashes"),
            local_file="gsm8k/test.jsonl", local_fields=FieldMap("question", "answer", "idx", "after_hashes"),
        ),
    ]
}


def get_benchmark(name: str) -> BenchmarkSpec:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def _base_dir(explicit: str | os.PathLike | None) -> Path:
    if explicit is None:
        return data_dir()
    base = Path(explicit).expanduser()
    if not base.is_dir():
        raise DataDirNotFound(f"data_dir {str(base)!r} is not a directory; {_HOW_TO_SET}")
    return base


def local_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a benchmark's local file (it may not exist). Raises `DataDirNotFound` if no data dir."""
    return _base_dir(data_dir) / get_benchmark(name).local_file


def _load_local(spec: BenchmarkSpec, path: Path, limit: int | None) -> list[Problem]:
    fields = spec.local_fields
    return load_problems_file(path, problem_field=fields.problem, answer_field=fields.answer,
                              id_field=fields.id, gold=fields.gold, name=spec.name, limit=limit)


_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def _hub_offline() -> str | None:
    """The environment variable that switches the hub off ("HF_HUB_OFFLINE=1"), or None."""
    for var in _OFFLINE_ENV:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    return None


def _load_hub(spec: BenchmarkSpec, limit: int | None, why: str = "") -> list[Problem]:
    """Load from the hub (or its local cache). `why` says why no local file was used, for the error message.
    Any failure (offline, no network, no cached copy) becomes one `DataDirNotFound` that names the benchmark, what
    was tried and how to point at local files, instead of a traceback from deep inside `datasets`."""
    if limit == 0:
        return []
    import datasets  # lazy: only users without local files pay for it (and need the network or a cached copy)

    split = spec.hub_split if limit is None else f"{spec.hub_split}[:{limit}]"
    offline = _hub_offline()
    try:
        ds = datasets.load_dataset(spec.hub_id, spec.hub_config, split=split)
    except Exception as e:  # noqa: BLE001 -- datasets raises many types for "not reachable / not cached"
        state = (f"the hub is switched off ({offline}) and no cached copy was found" if offline
                 else f"loading it from the hub failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        raise DataDirNotFound(f"{spec.name}: {why + '; ' if why else ''}{state} (hub dataset {spec.hub_id}); "
                              f"{_HOW_TO_SET}") from None
    return problems_from_hub_rows(spec, ds, limit=limit)


def problems_from_hub_rows(spec: BenchmarkSpec, rows: Iterable[Mapping[str, Any]],
                           limit: int | None = None) -> list[Problem]:
    """Rows of the benchmark's hub dataset (a `datasets.Dataset` or any iterable of dicts) -> Problems.
    `Problem.source` is ``"hub-id:split:index"`` (0-based); errors name the 1-based row."""
    origin = f"{spec.hub_id}:{spec.hub_split}"
    return problems_from_records(
        enumerate(rows, start=1), fields=spec.hub_fields, name=spec.name, origin=origin,
        source_of=lambda row: f"{origin}:{row - 1}", limit=limit,
    )


def load_benchmark(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    source: str = "auto",
) -> list[Problem]:
    """Load a registry benchmark as Problems with ids ``"<name>/<id>"``.

    source: "local" reads ``data_dir/<spec.local_file>`` (data_dir defaults to `data_dir()`); "hub" calls
    `datasets.load_dataset(hub_id, hub_config, split=hub_split)`; "auto" uses the local file when present,
    else the hub. `limit` keeps the first N problems.
    """
    spec = get_benchmark(name)
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    _check_limit(limit)
    if source == "hub":
        return _load_hub(spec, limit)
    try:
        path = local_path(name, data_dir)
    except DataDirNotFound as e:
        if source == "local" or data_dir is not None or os.environ.get(DATA_DIR_ENV):
            raise  # an explicitly named directory that does not exist is an error, not a hint to go online
        return _load_hub(spec, limit, why=str(e).split(";")[0])
    if path.is_file():
        return _load_local(spec, path, limit)
    if source == "local":
        raise FileNotFoundError(f"{spec.name}: local file {path} not found; {_HOW_TO_SET}, "
                                f"or use source='hub' to load {spec.hub_id}")
    return _load_hub(spec, limit, why=f"no local file {path}")
