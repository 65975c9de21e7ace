"""The one record every benchmark, user file and training task is turned into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A math problem with its gold answer.

    id: stable identifier, unique within its benchmark (used for resume and for pairing runs in reports).
    problem: the problem text shown to the model (before any prompt template).
    answer: the gold final answer as a string (already pulled out of its source field, e.g. the last
        ``\\boxed{}`` of a Minerva solution); the verifier normalises odd forms ("025", "27.0", "2,125").
    source: where it came from, "path:line" for files or "hub-id:split:index", for error messages.
    meta: anything else worth keeping (subject, level, url, ...).
    """

    id: str
    problem: str
    answer: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
