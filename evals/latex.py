"""Small LaTeX helpers shared by gold-answer loading and answer extraction."""

from __future__ import annotations

import re

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in `text`, matching nested braces.

    Returns None when there is no complete box. ``\\boxed 5`` (no braces) is also accepted, up to the next
    ``$`` or whitespace, as MATH solutions occasionally write it.
    """
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    m = None
    for m in re.finditer(r"\\boxed ([^\s$]+)", text):
        pass
    if m is not None:
        return m.group(1).strip()
    return None
