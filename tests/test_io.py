"""Run files: JSONL rows survive a writer killed mid-append, and readers of a run never modify it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.io import CorruptFileError, append_jsonl, jsonl_text, read_jsonl, read_jsonl_numbered

ROWS = st.lists(st.dictionaries(st.sampled_from(["step", "loss", "text"]),
                                st.one_of(st.integers(-5, 5), st.text(max_size=8), st.floats(allow_nan=False))),
                min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(rows=ROWS, cut=st.floats(0, 1), more=ROWS)
def test_a_cut_file_repairs_to_a_prefix_and_appending_continues(tmp_path_factory, rows, cut, more):
    path = tmp_path_factory.mktemp("io") / "m.jsonl"
    text = jsonl_text(rows).encode()
    path.write_bytes(text[: int(cut * len(text))])  # the writer was killed after this many bytes
    got = read_jsonl(path)
    assert got == rows[: len(got)]  # whole lines survive, the torn one is dropped
    append_jsonl(path, more)  # the resumed writer appends after the repaired file
    assert read_jsonl(path) == got + more


def test_torn_tail_modes(tmp_path):
    path = tmp_path / "m.jsonl"
    torn = '{"step": 1}\n{"step": 2}\n{"step": 3, "lo'
    path.write_text(torn)
    rows, was_torn = read_jsonl_numbered(path, torn_tail="skip")
    assert rows == [(1, {"step": 1}), (2, {"step": 2})] and was_torn and path.read_text() == torn  # untouched
    with pytest.raises(CorruptFileError, match=r"m\.jsonl:3: not valid JSON"):
        read_jsonl(path, torn_tail="raise")
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]  # repair: truncated to the last whole line
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


@pytest.mark.parametrize("mode", ["repair", "skip", "raise"])
def test_bad_lines_before_the_end_are_corruption_in_every_mode(tmp_path, mode):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(CorruptFileError, match=r"m\.jsonl:2: not valid JSON"):
        read_jsonl(path, torn_tail=mode)
    path.write_text('{"step": 1}\n[1, 2]\n')
    with pytest.raises(CorruptFileError, match=r"m\.jsonl:2: expected a JSON object, got list"):
        read_jsonl(path, torn_tail=mode)
    path.write_text('{"step": 1}\n{"step": 2, oops}\n')  # complete (newline-ended) but bad: not a torn write
    with pytest.raises(CorruptFileError, match=r"m\.jsonl:2"):
        read_jsonl(path, torn_tail=mode)


def test_missing_file_has_no_rows(tmp_path):
    assert read_jsonl(tmp_path / "nope.jsonl") == []
    with pytest.raises(ValueError, match="torn_tail"):
        read_jsonl(tmp_path / "nope.jsonl", torn_tail="fix")
