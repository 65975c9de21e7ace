"""Paths in files the suite writes: relative to the file's own folder, or a label; never an absolute path or the
home directory, so a summary, a report or a benchmark result can be committed or sent as it is.

* :func:`portable_path` -- a path as written into a file that lives in `base`: relative to `base` when both sit
  under a common folder below the home directory's parents (``../train/tbrm-n1/checkpoint-40``), else a label
  (the folder's name), since a relative path that climbs to ``/`` would spell out the machine's layout.
* :func:`portable_model` -- a model as results name it: the bundled model's name, a hub id as given, or a local
  directory as a portable path. Its identity lives in the fingerprint's hash, not in where it was on disk.
* :func:`leaks` -- the absolute paths (and the home directory) a text still contains; tests use it on every
  file a run or report wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["portable_path", "portable_model", "leaks", "scrub"]


def _home() -> Path:
    return Path.home().resolve()


def portable_path(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """`path` for a file written in folder `base`: relative to `base` if that never names a folder at or above
    the home directory (or the filesystem root), else the last path component (a label)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not str(path).startswith("~"):
        p = Path.cwd() / p
    p, b = Path(os.path.abspath(p)), Path(os.path.abspath(Path(base).expanduser()))
    common = Path(os.path.commonpath([p, b]))
    home = _home()
    # climbing out of `common` names every folder below it: refuse when `common` is the root or holds the home dir
    if common == Path(common.anchor) or (home != common and home.is_relative_to(common)):
        return p.name or str(path)
    rel = os.path.relpath(p, b)
    return "." if rel == "." else rel


def portable_model(model: str, model_path: str, base: str | os.PathLike) -> str:
    """How a result names its model: `model` when it is the bundled model's name or a hub id (``owner/name``),
    else the resolved local directory as a portable path relative to `base`."""
    from evals.models import ALIASES, BUNDLED

    key = ALIASES.get(model, model)
    if key in BUNDLED:
        return key
    if not Path(model_path).expanduser().exists():
        return model_path  # a hub id
    return portable_path(model_path, base)


def leaks(text: str, *paths: str | os.PathLike) -> list[str]:
    """Which of `paths` (absolute forms) and the home directory occur in `text`."""
    found = []
    for p in {str(Path(os.path.abspath(Path(x).expanduser()))) for x in paths} | {str(_home()), str(Path.home())}:
        if p not in ("/", "") and p in text:
            found.append(p)
    return sorted(found)


def scrub(text: str, replacements: dict[str, str]) -> str:
    """Replace each absolute path in `replacements` (longest first, so a run folder wins over its parent) by its
    portable form; for free text such as warnings built from paths as the user typed them."""
    for src in sorted(replacements, key=len, reverse=True):
        if src:
            text = text.replace(src, replacements[src])
    return text
