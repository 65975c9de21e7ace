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


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_the_mode_a_plain_open_gives(tmp_path, umask):
    """Every atomic writer (run files, report figures) creates its file as `open(path, "w")` would: 0666 less the
    umask, so a run on a shared machine is as readable as any other file its user writes (mkstemp made 0600)."""
    import os
    import stat

    from evals.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
    from reports.figures import write_bytes

    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
        writers = {"t.txt": lambda p: atomic_write_text(p, "x"), "j.json": lambda p: atomic_write_json(p, {"a": 1}),
                   "r.jsonl": lambda p: atomic_write_jsonl(p, [{"a": 1}]), "f.png": lambda p: write_bytes(p, b"x")}
        for name, write in writers.items():
            write(tmp_path / name)
            write(tmp_path / name)  # over an existing file too
    finally:
        os.umask(old)
    want = stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
    assert want == 0o666 & ~umask
    assert {n: oct(stat.S_IMODE(os.stat(tmp_path / n).st_mode)) for n in writers} == {n: oct(want) for n in writers}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*writers, "plain"])  # no temporary file left
