"""Crash-safe files: every long run (evaluation, training) writes through these helpers.

- `atomic_write_*` writes to a temporary file in the same folder and renames it over the target, so a reader
  (or a resumed run) never sees half a file.
- `append_jsonl` appends whole lines and fsyncs, so a crash loses at most the line being written;
  `read_jsonl` skips a torn final line (the crash case) but reports a torn line anywhere else as corruption.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


class CorruptFileError(ValueError):
    """A run file that cannot be read; the message names the file and line."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


def jsonl_text(rows: Iterable[dict]) -> str:
    """The one JSONL line format of every run file."""
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, jsonl_text(rows))


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = jsonl_text(rows)
    if not text:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = True) -> list[dict]:
    """Read a JSONL run file. A torn *last* line (a crash mid-write) is dropped and the file is truncated to
    its last whole line, so appending can continue; a bad line elsewhere raises CorruptFileError."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows: list[dict] = []
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            rows.append(json.loads(line))
            good_bytes += len(line) + 1
        except json.JSONDecodeError as e:
            is_tail = all(not rest.strip() for rest in lines[i + 1 :])
            if is_tail and tolerate_torn_tail:
                with open(path, "r+b") as f:
                    f.truncate(min(good_bytes, len(raw)))
                break
            raise CorruptFileError(f"{path}:{i + 1}: not valid JSON ({e.msg})") from e
    return rows
