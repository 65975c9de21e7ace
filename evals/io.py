"""Crash-safe files: every long run (evaluation, training) writes through these helpers.

- `atomic_write_*` writes to a temporary file in the same folder and renames it over the target, so a reader
  (or a resumed run) never sees half a file.
- `append_jsonl` appends whole lines and fsyncs, so a crash loses at most the line being written;
  `read_jsonl` skips a torn final line (the crash case) but reports a torn line anywhere else as corruption.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterable


class CorruptFileError(ValueError):
    """A run file that cannot be read; the message names the file and line."""


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside `path`, open for writing. Created with mode 0666 so the kernel applies the umask
    (and a folder's default ACL), exactly as for a plain `open(path, "w")`: `tempfile.mkstemp` would make it 0600
    whatever the umask, and the rename would keep that, leaving teammates unable to read a shared run."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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


def read_jsonl_numbered(path: str | os.PathLike, *, torn_tail: str = "repair") -> tuple[list[tuple[int, dict]], bool]:
    """The rows of a JSONL run file with their 1-based line numbers, and whether a torn last line was met.

    Every line must be a JSON object, else CorruptFileError names the file and line. The one exception is a
    torn *last* line, the mark of a writer killed mid-append (no newline after it): `torn_tail="repair"` drops
    it and truncates the file to its last whole line, so the writer can resume appending; `"skip"` drops it and
    leaves the file alone (a reader of someone else's run, live or crashed, must not modify it); `"raise"`
    treats it as corruption. A missing file has no rows."""
    if torn_tail not in ("repair", "skip", "raise"):
        raise ValueError(f"torn_tail must be repair, skip or raise, not {torn_tail!r}")
    path = Path(path)
    if not path.exists():
        return [], False
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows: list[tuple[int, dict]] = []
    good_bytes = 0
    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                if i == len(lines) and torn_tail != "raise":  # last line, no newline after it: torn
                    if torn_tail == "repair":
                        with open(path, "r+b") as f:
                            f.truncate(good_bytes)
                    return rows, True
                raise CorruptFileError(f"{path}:{i}: not valid JSON ({getattr(e, 'msg', e)})") from None
            if not isinstance(row, dict):
                raise CorruptFileError(f"{path}:{i}: expected a JSON object, got {type(row).__name__}")
            rows.append((i, row))
        good_bytes += len(line) + 1
    if torn_tail == "repair" and raw and not raw.endswith(b"\n"):  # a whole last line missing only its newline
        with open(path, "ab") as f:
            f.write(b"\n")
    return rows, False


def read_jsonl(path: str | os.PathLike, *, torn_tail: str = "repair") -> list[dict]:
    """The rows of a JSONL run file (see `read_jsonl_numbered` for torn last lines and errors)."""
    return [row for _, row in read_jsonl_numbered(path, torn_tail=torn_tail)[0]]
