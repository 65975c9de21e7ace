"""Prompt templates: how a problem is shown to the model.

The default, ``qwen-math``, is the Qwen2.5-Math chain-of-thought prompt used by the TBRM paper
(arXiv 2505.15311): the tokenizer's chat template with `QWEN_MATH_INSTRUCTION` as the system message and
the problem as the user message, ending with the assistant turn opener (``add_generation_prompt=True``).

Templates:
  qwen-math       system = instruction, user = problem, via the chat template (default).
  qwen-math-user  user = problem + "\\n" + instruction, via the chat template (for templates that drop or
                  replace system messages).
  plain           "Question: ...\\nPlease reason step by step, ...\\nAnswer:" with no chat template (base models).
  raw             the problem text as-is.

A chat template name used with a tokenizer that has no chat template falls back to ``plain``; the fallback
is warned about and recorded by `template_record`, which results should store next to their scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any

QWEN_MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

TEMPLATES = ("qwen-math", "qwen-math-user", "plain", "raw")
DEFAULT_TEMPLATE = "qwen-math"
CHAT_TEMPLATES = ("qwen-math", "qwen-math-user")

PLACEHOLDER_PROBLEM = "<problem>"


def _check(template: str) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; known: {', '.join(TEMPLATES)}")


def has_chat_template(tokenizer: Any) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def effective_template(template: str, tokenizer: Any) -> str:
    """The template actually used: `template`, or ``plain`` when a chat template is asked for but the
    tokenizer (possibly None) has none."""
    _check(template)
    if template in CHAT_TEMPLATES and not has_chat_template(tokenizer):
        return "plain"
    return template


def _plain(problem: str) -> str:
    return "Question: " + problem + "\n" + QWEN_MATH_INSTRUCTION + "\nAnswer:"


def chat_messages(problem_text: str, template: str) -> list[dict[str, str]]:
    """The chat messages a chat template is applied to."""
    problem = problem_text.strip()
    if template == "qwen-math":
        return [{"role": "system", "content": QWEN_MATH_INSTRUCTION}, {"role": "user", "content": problem}]
    if template == "qwen-math-user":
        return [{"role": "user", "content": problem + "\n" + QWEN_MATH_INSTRUCTION}]
    raise ValueError(f"template {template!r} does not use a chat template; chat templates: {', '.join(CHAT_TEMPLATES)}")


def render_prompt(problem_text: str, template: str, tokenizer: Any = None) -> str:
    """The exact text given to the model for one problem (already containing the chat template's special
    tokens when one is used). `tokenizer` may be None for ``plain`` and ``raw``."""
    if not isinstance(problem_text, str):
        raise TypeError(f"problem_text must be a string, got {type(problem_text).__name__}")
    used = effective_template(template, tokenizer)
    if used != template:
        warnings.warn(f"prompt template {template!r}: the tokenizer has no chat template; "
                      f"falling back to 'plain'", stacklevel=2)
    if used == "raw":
        return problem_text
    if used == "plain":
        return _plain(problem_text.strip())
    text = tokenizer.apply_chat_template(chat_messages(problem_text, used), tokenize=False,
                                         add_generation_prompt=True)
    if not isinstance(text, str):  # some tokenizer versions return a list for batched input
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def template_record(template: str, tokenizer: Any = None) -> dict[str, Any]:
    """A JSON-serialisable description of what the model saw: requested and effective template, the
    instruction, whether (and which, by sha256) chat template was used, and an example rendering with
    the placeholder problem ``<problem>``."""
    used = effective_template(template, tokenizer)
    chat = used in CHAT_TEMPLATES
    chat_sha = None
    if chat:
        ct = tokenizer.chat_template
        ct_text = ct if isinstance(ct, str) else json.dumps(ct, sort_keys=True)
        chat_sha = hashlib.sha256(ct_text.encode("utf-8")).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        example = render_prompt(PLACEHOLDER_PROBLEM, template, tokenizer)
    return {
        "name": template,
        "effective": used,
        "fallback": used if used != template else None,
        "instruction": None if used == "raw" else QWEN_MATH_INSTRUCTION,
        "chat_template_used": chat,
        "chat_template_sha256": chat_sha,
        # the tokenizer by name (a local folder by its last part): no machine path in a summary
        "tokenizer": _tokenizer_name(tokenizer),
        "example_problem": PLACEHOLDER_PROBLEM,
        "example": example,
    }


def _tokenizer_name(tokenizer) -> str | None:
    name = getattr(tokenizer, "name_or_path", None) if tokenizer is not None else None
    if name and os.path.isabs(os.path.expanduser(str(name))):
        return os.path.basename(str(name).rstrip("/"))
    return name
