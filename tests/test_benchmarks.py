"""Benchmark registry and file loaders, against the real data under data_dir() and real files in tmp_path.

Nothing here touches the network: hub loading is exercised through `problems_from_hub_rows` on a locally
built `datasets.Dataset` with the hub field names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from evals import benchmarks as B
from evals.benchmarks import (
    BENCHMARKS,
    DataDirNotFound,
    DataError,
    data_dir,
    get_benchmark,
    load_benchmark,
    load_problems_file,
    field_value,
    parse_field_path,
    problems_from_hub_rows,
    read_records,
)
from evals.grading.latex import last_boxed

EXPECTED = {"math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "minerva": 272,
            "olympiadbench": 675, "gsm8k": 1319}


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv(B.DATA_DIR_ENV, raising=False)


@pytest.fixture
def real_data_dir(real_data_dir, monkeypatch) -> Path:
    """conftest's real data folder (skips when absent), made the default data dir for the test."""
    monkeypatch.setenv(B.DATA_DIR_ENV, str(real_data_dir))
    return real_data_dir


def raw_records(base: Path, name: str) -> list[dict]:
    path = base / get_benchmark(name).local_file
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------- registry ----------------------------


def test_registry_names_and_paper_defaults():
    assert list(BENCHMARKS) == list(EXPECTED)
    for name, spec in BENCHMARKS.items():
        assert spec.name == name
        assert spec.top_p == 1.0 and spec.max_new_tokens == 2048
        if name in ("aime24", "aime25", "amc23"):
            assert (spec.samples, spec.temperature) == (32, 1.0)
        else:
            assert (spec.samples, spec.temperature) == (1, 0.0)
    assert get_benchmark("gsm8k").hub_id == "openai/gsm8k" and get_benchmark("gsm8k").hub_config == "main"
    assert get_benchmark("math500").hub_id == "HuggingFaceH4/MATH-500"
    # AIME25 must come from the clean MathArena file, not the AReaL copy with control characters
    assert get_benchmark("aime25").local_file == "aime25/test_matharena.jsonl"


def test_unknown_benchmark_lists_known_names():
    with pytest.raises(KeyError) as ei:
        get_benchmark("math5000")
    for name in EXPECTED:
        assert name in str(ei.value)
    with pytest.raises(KeyError, match="math500"):
        load_benchmark("nope", source="local")


def test_unknown_source_rejected():
    with pytest.raises(ValueError, match="auto, local, hub"):
        load_benchmark("gsm8k", source="disk")


def test_default_data_dir_is_repo_sibling_shared_data(tmp_path, monkeypatch):
    repo = tmp_path / "clone"
    repo.mkdir()
    monkeypatch.setattr(B, "_repo_root", lambda: repo)
    monkeypatch.chdir(repo)
    with pytest.raises(DataDirNotFound, match="TBRM_DATA_DIR"):  # a fresh clone: nothing beside it
        data_dir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    assert data_dir() == tmp_path / "shared" / "data"


def test_no_data_and_offline_hub_is_a_clear_error_not_a_download(tmp_path, monkeypatch):
    """A fresh clone without ../shared and without network: loading a benchmark by name says what to do."""
    repo = tmp_path / "clone"
    repo.mkdir()
    monkeypatch.setattr(B, "_repo_root", lambda: repo)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataDirNotFound) as ei:
        load_benchmark("amc23", limit=2)
    msg = str(ei.value)
    assert "amc23" in msg and "HF_HUB_OFFLINE" in msg and B.DATA_DIR_ENV in msg and "math-ai/amc23" in msg


# ---------------------------------------------------------------- fixture files (always present) --------

FIXTURE_GOLDS = {  # first two golds of each fixture file, as each benchmark's gold rule must read them
    "math500": ["5", "\\frac{3}{4}"], "aime24": ["025", "077"], "aime25": ["25", "77"], "amc23": ["3.0", "6.0"],
    "minerva": ["30", "1.6"], "olympiadbench": ["8", "5"], "gsm8k": ["5", "24"],
}


@pytest.mark.parametrize("name", list(FIXTURE_GOLDS))
def test_fixture_files_load_in_each_benchmarks_own_layout(name):
    from tests.conftest import FIXTURE_DATA

    problems = load_benchmark(name, data_dir=FIXTURE_DATA, source="local")
    assert len(problems) == 6 and len({p.id for p in problems}) == 6
    assert [p.answer for p in problems[:2]] == FIXTURE_GOLDS[name]
    assert all(p.id.startswith(f"{name}/") and p.problem for p in problems)
    assert load_benchmark("gsm8k", data_dir=FIXTURE_DATA)[3].answer == "2,125"  # commas kept for the verifier


# ---------------------------------------------------------------- real data ---------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_benchmark_loads_with_expected_count(real_data_dir, name):
    problems = load_benchmark(name, source="local")
    assert len(problems) == EXPECTED[name]
    ids = [p.id for p in problems]
    assert len(set(ids)) == len(ids)
    path = real_data_dir / get_benchmark(name).local_file
    for i, p in enumerate(problems):
        assert p.id.startswith(f"{name}/")
        assert p.problem.strip() and p.problem == p.problem.strip()
        assert p.answer.strip() and p.answer == p.answer.strip()
        assert p.source == f"{path}:{i + 1}"  # no blank lines in these files: record i is line i+1
    # auto resolves to the same local file (and therefore never reaches the hub here)
    assert [p.id for p in load_benchmark(name)] == ids


def test_math500_ids_and_golds(real_data_dir):
    problems = load_benchmark("math500")
    assert problems[0].id == "math500/test/precalculus/807.json"
    assert problems[0].answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert problems[2].answer == r"\frac{14}{3}"
    assert problems[0].meta["subject"] == "Precalculus" and problems[0].meta["level"] == 2


def test_aime24_golds_stay_zero_padded(real_data_dir):
    by_id = {p.id: p.answer for p in load_benchmark("aime24")}
    assert by_id["aime24/67"] == "025"
    assert by_id["aime24/85"] == "080"
    assert all(re.fullmatch(r"\d{3}", a) for a in by_id.values())


def test_aime25_uses_clean_text(real_data_dir):
    problems = load_benchmark("aime25")
    assert problems[0].id == "aime25/aime_2025_I_1" and problems[0].answer == "70"
    assert problems[15].id == "aime25/aime_2025_II_1"
    for p in problems:
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", p.problem), p.id
    # the AReaL copy has form feeds where \frac should be; our loader reads the other file
    assert any("\\frac" in p.problem for p in problems)


def test_amc23_float_golds(real_data_dir):
    problems = load_benchmark("amc23")
    assert [p.answer for p in problems[:4]] == ["27.0", "36.0", "45.0", "3159.0"]
    assert problems[0].id == "amc23/0"


def test_gsm8k_gold_after_hashes_keeps_commas(real_data_dir):
    by_id = {p.id: p.answer for p in load_benchmark("gsm8k")}
    assert by_id["gsm8k/0"] == "18"
    assert by_id["gsm8k/146"] == "2,125"
    assert by_id["gsm8k/201"] == "114,200"
    assert sum("," in a for a in by_id.values()) == 14
    assert all("#" not in a for a in by_id.values())


def test_minerva_gold_is_last_box_of_solution(real_data_dir):
    problems = load_benchmark("minerva")
    raw = raw_records(real_data_dir, "minerva")
    assert problems[0].answer == "1.6" and problems[1].answer == "4.5e33"
    for p, r in zip(problems, raw):
        assert p.id == f"minerva/{r['idx']}"
        assert p.answer == last_boxed(r["solution"]).strip()


def test_olympiadbench_gold_strips_dollars(real_data_dir):
    problems = load_benchmark("olympiadbench")
    raw = raw_records(real_data_dir, "olympiadbench")
    by_id = {p.id: p.answer for p in problems}
    assert by_id["olympiadbench/1610"] == r"\frac{1}{2 n+2}"
    assert by_id["olympiadbench/1641"] == r"\binom{2n}{n}"
    for p, r in zip(problems, raw):
        assert p.answer == r["final_answer"][0].strip("$").strip()
        assert not p.answer.startswith("$") and not p.answer.endswith("$")
        assert p.meta["answer_type"] == r["answer_type"]


def test_limit_takes_first_n(real_data_dir):
    full = load_benchmark("gsm8k")
    assert load_benchmark("gsm8k", limit=5) == full[:5]
    assert load_benchmark("gsm8k", limit=0) == []
    for bad in (-1, 2.5, True):
        for source in ("local", "hub"):  # rejected before any file or hub access
            with pytest.raises(ValueError, match="limit"):
                load_benchmark("gsm8k", limit=bad, source=source)
    assert load_benchmark("gsm8k", limit=0, source="hub") == []  # nothing to fetch


# ---------------------------------------------------------------- data dir ----------------------------


def test_env_override_points_at_small_file(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [
        {"question": "What is 1+1?", "answer": "1+1=2\n#### 2", "idx": 7},
        {"question": "What is 1000*3?", "answer": "so\n#### 3,000 ", "idx": 8},
    ])
    monkeypatch.setenv(B.DATA_DIR_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    problems = load_benchmark("gsm8k", source="local")
    assert [(p.id, p.answer) for p in problems] == [("gsm8k/7", "2"), ("gsm8k/8", "3,000")]
    assert problems[1].source == f"{tmp_path / 'gsm8k' / 'test.jsonl'}:2"
    # explicit data_dir beats the environment
    other = tmp_path / "other"
    (other / "gsm8k").mkdir(parents=True)
    write_jsonl(other / "gsm8k" / "test.jsonl", [{"question": "q", "answer": "#### 5", "idx": 0}])
    assert [p.answer for p in load_benchmark("gsm8k", data_dir=other)] == ["5"]


def test_missing_env_data_dir_is_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(B.DATA_DIR_ENV, str(missing))
    with pytest.raises(DataDirNotFound) as ei:
        data_dir()
    assert B.DATA_DIR_ENV in str(ei.value) and str(missing) in str(ei.value)
    for source in ("local", "auto"):  # a named directory that does not exist never sends us to the hub
        with pytest.raises(DataDirNotFound, match=B.DATA_DIR_ENV):
            load_benchmark("math500", source=source)


def test_missing_explicit_data_dir_and_missing_file(tmp_path):
    with pytest.raises(DataDirNotFound, match="TBRM_DATA_DIR"):
        load_benchmark("math500", data_dir=tmp_path / "nope", source="local")
    with pytest.raises(FileNotFoundError) as ei:
        load_benchmark("math500", data_dir=tmp_path, source="local")
    msg = str(ei.value)
    assert str(tmp_path / "math500" / "test.jsonl") in msg and "HuggingFaceH4/MATH-500" in msg


# ---------------------------------------------------------------- user files --------------------------


def test_field_paths():
    assert parse_field_path("final_answer[0]") == ("final_answer", 0)
    assert parse_field_path("meta.gold[1][-1]") == ("meta", "gold", 1, -1)
    for bad in ("", "a..b", "[0]", "a[x]", "a.", 3):
        with pytest.raises(ValueError):
            parse_field_path(bad)


def test_user_jsonl_with_custom_fields(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"key": "a", "q": "  Solve x+1=2. ", "final_answer": ["$1$"], "extra": {"level": 3}},
        {"key": "b", "q": "Compute 2^{10}.", "final_answer": ["1024", "alt"], "extra": {"level": 1}},
    ])
    problems = load_problems_file(path, problem_field="q", answer_field="final_answer[0]", id_field="key")
    assert [p.id for p in problems] == ["mine/a", "mine/b"]
    assert problems[0].problem == "Solve x+1=2."
    assert problems[0].answer == "$1$"  # plain rule: kept as given
    assert problems[0].meta == {"extra": {"level": 3}}
    assert problems[1].source == f"{path}:2"
    stripped = load_problems_file(path, problem_field="q", answer_field="final_answer[0]", gold="strip_dollars",
                                  name="olymp")
    assert [(p.id, p.answer) for p in stripped] == [("olymp/0", "1"), ("olymp/1", "1024")]
    nested = load_problems_file(path, problem_field="q", answer_field="extra.level", limit=1)
    assert [(p.id, p.answer) for p in nested] == [("mine/0", "3")]


def test_user_parquet_and_json_list(tmp_path):
    df = pd.DataFrame({
        "Question": ["What is 2+2?", "What is 3*3?", "Name a prime."],
        "gold": [["4"], ["9"], ["2", "3"]],
        "num": [10, 11, 12],
    })
    pq_path = tmp_path / "set.parquet"
    df.to_parquet(pq_path)
    problems = load_problems_file(pq_path, problem_field="Question", answer_field="gold[0]", id_field="num")
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("set/10", "What is 2+2?", "4"), ("set/11", "What is 3*3?", "9"), ("set/12", "Name a prime.", "2")]
    assert problems[2].source == f"{pq_path}:3"

    js = tmp_path / "set.json"
    js.write_text(json.dumps([{"p": "one?", "a": 1}, {"p": "half?", "a": 0.5}]))
    assert [(p.id, p.answer) for p in load_problems_file(js, problem_field="p", answer_field="a")] == [
        ("set/0", "1"), ("set/1", "0.5")]


def test_unsupported_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv"):
        load_problems_file(tmp_path / "x.csv", problem_field="p", answer_field="a")
    with pytest.raises(FileNotFoundError, match="x.jsonl"):
        load_problems_file(tmp_path / "x.jsonl", problem_field="p", answer_field="a")


GOOD = {"id": "g", "problem": "What is 6*7?", "answer": "42", "final_answer": ["$42$"]}

# (records written as lines, bad 1-based line, field named, words in the reason, extra kwargs)
ERROR_CASES = {
    "bad_json": (
        [GOOD, '{"id": "x", "problem": "unterminated'], 2, None, "bad JSON", {}),
    "not_object": ([GOOD, "[1, 2]"], 2, None, "expected a JSON object", {}),
    "missing_answer": ([GOOD, {"id": "x", "problem": "p"}], 2, "answer", "missing", {}),
    "null_answer": ([GOOD, {"id": "x", "problem": "p", "answer": None}], 2, "answer", "missing", {}),
    "empty_answer": ([GOOD, GOOD | {"id": "y"}, {"id": "x", "problem": "p", "answer": "  "}], 3, "answer",
                     "empty answer", {}),
    "list_answer": ([{"id": "x", "problem": "p", "answer": ["1"]}], 1, "answer", "string or number", {}),
    "missing_problem": ([GOOD, {"id": "x", "answer": "1"}], 2, "problem", "missing", {}),
    "non_string_problem": ([GOOD, {"id": "x", "problem": 12, "answer": "1"}], 2, "problem",
                           "expected a string, got int", {}),
    "empty_problem": ([{"id": "x", "problem": " \n", "answer": "1"}], 1, "problem", "empty problem", {}),
    "duplicate_id": ([GOOD, GOOD | {"id": "h"}, GOOD], 3, "id", "duplicate id 'g' (first seen at line 1)", {}),
    "missing_id": ([GOOD, {"problem": "p", "answer": "1"}], 2, "id", "missing", {}),
    "index_out_of_range": ([GOOD, GOOD | {"id": "y", "final_answer": []}], 2, "final_answer[0]",
                           "out of range", {"answer_field": "final_answer[0]"}),
    "index_into_string": ([GOOD | {"final_answer": "$1$"}], 1, "final_answer[0]", "expected a list",
                          {"answer_field": "final_answer[0]"}),
    "no_box": ([GOOD | {"solution": "so \\boxed{3}"}, GOOD | {"id": "y", "solution": "no box here"}], 2,
               "solution", "no \\boxed{}", {"answer_field": "solution", "gold": "last_boxed"}),
    "no_hashes": ([GOOD | {"answer": "it is 42"}], 1, "answer", "'#### '", {"gold": "after_hashes"}),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_jsonl_errors_name_file_line_field(tmp_path, case):
    records, line, field, reason, kwargs = ERROR_CASES[case]
    path = tmp_path / "data.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    kwargs = {"problem_field": "problem", "answer_field": "answer", "id_field": "id"} | kwargs
    with pytest.raises(DataError) as ei:
        load_problems_file(path, **kwargs)
    e = ei.value
    assert isinstance(e, ValueError)
    assert (e.path, e.line, e.field) == (str(path), line, field)
    msg = str(e)
    assert msg.startswith(f"{path}:{line}: ")
    assert "data.jsonl" in msg and reason in msg
    if field is not None:
        assert f"field '{field}'" in msg


def test_error_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n   \n" + json.dumps({"id": "x", "problem": "p"}) + "\n")
    with pytest.raises(DataError, match=r"data\.jsonl:4: field 'answer': missing") as ei:
        load_problems_file(path, problem_field="problem", answer_field="answer", id_field="id")
    assert ei.value.line == 4


def test_parquet_errors_name_row(tmp_path):
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"problem": ["a?", "b?", "c?"], "answer": ["1", "", "3"], "id": [1, 2, 1]}).to_parquet(path)
    with pytest.raises(DataError, match=r"rows\.parquet:2: field 'answer': empty answer") as ei:
        load_problems_file(path, problem_field="problem", answer_field="answer", id_field="id")
    assert (ei.value.line, ei.value.field) == (2, "answer")
    pd.DataFrame({"problem": ["a?", "b?", "c?"], "answer": ["1", "2", "3"], "id": [1, 2, 1]}).to_parquet(path)
    with pytest.raises(DataError, match=r"rows\.parquet:3: field 'id': duplicate id '1'"):
        load_problems_file(path, problem_field="problem", answer_field="answer", id_field="id")
    # limit stops before the duplicate
    assert len(load_problems_file(path, problem_field="problem", answer_field="answer", id_field="id",
                                  limit=2)) == 2


def test_json_list_errors(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('{"problem": "p", "answer": "1"}')
    with pytest.raises(DataError, match="must hold a list"):
        load_problems_file(path, problem_field="problem", answer_field="answer")
    path.write_text('[{"problem": "p", "answer": "1"},\n {"problem": "q", "answer": }]')
    with pytest.raises(DataError, match=r"d\.json:2: bad JSON") as ei:
        load_problems_file(path, problem_field="problem", answer_field="answer")
    assert ei.value.line == 2


def test_registry_minerva_without_box_is_data_error(tmp_path):
    (tmp_path / "minerva_math").mkdir()
    path = write_jsonl(tmp_path / "minerva_math" / "test.jsonl", [
        {"problem": "p1", "solution": "thus \\boxed{2}", "idx": 0},
        {"problem": "p2", "solution": "thus 3", "idx": 1},
    ])
    with pytest.raises(DataError) as ei:
        load_benchmark("minerva", data_dir=tmp_path, source="local")
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(path), 2, "solution")


def test_read_records_and_field_value_for_graders(tmp_path):
    """The record-level API `evals/grading/grade.py` builds on: physical line numbers and per-kind validation."""
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps({"response": "", "answer": 70, "id": 3, "o": {"g": [" 1.5 "]}}) + "\n\n"
                    + json.dumps({"response": 5, "answer": "", "id": None}) + "\n")
    records = list(read_records(path))
    assert [line for line, _ in records] == [1, 3]
    (l1, r1), (l3, r3) = records
    assert field_value(r1, "response", path=path, line=l1, kind="response") == ""  # empty output is allowed
    assert field_value(r1, "answer", path=path, line=l1, kind="answer") == "70"
    assert field_value(r1, "id", path=path, line=l1, kind="id") == "3"
    assert field_value(r1, "o.g[0]", path=path, line=l1, kind="answer") == "1.5"
    assert field_value(r1, "o", path=path, line=l1) == {"g": [" 1.5 "]}
    for field, kind, reason in [("response", "response", "expected a string, got int"),
                                ("answer", "answer", "empty answer"), ("id", "id", "missing (null)"),
                                ("nope", "value", "missing")]:
        with pytest.raises(DataError) as ei:
            field_value(r3, field, path=path, line=l3, kind=kind)
        assert (ei.value.line, ei.value.field) == (3, field)
        assert str(ei.value) == f"{path}:3: field '{field}': {reason}"
    pq_path = tmp_path / "gen.parquet"
    pd.DataFrame({"response": ["a", "b"]}).to_parquet(pq_path)
    assert [(line, r["response"]) for line, r in read_records(pq_path)] == [(1, "a"), (2, "b")]


# ---------------------------------------------------------------- hub rows (offline) ------------------


def test_hub_rows_use_hub_field_names():
    from datasets import Dataset

    rows = Dataset.from_list([
        {"question": "Find x.", "final_answer": ["$x=1$"], "id": 5},
        {"question": "Find y.", "final_answer": ["$2$"], "id": 6},
    ])
    problems = problems_from_hub_rows(get_benchmark("olympiadbench"), rows)
    assert [(p.id, p.answer, p.source) for p in problems] == [
        ("olympiadbench/0", "x=1", "math-ai/olympiadbench:test:0"),
        ("olympiadbench/1", "2", "math-ai/olympiadbench:test:1"),
    ]
    gsm = problems_from_hub_rows(get_benchmark("gsm8k"), [{"question": "q", "answer": "x\n#### 1,234"}])
    assert gsm[0].answer == "1,234"
    with pytest.raises(DataError) as ei:
        problems_from_hub_rows(get_benchmark("minerva"), [{"question": "q", "answer": "1"}, {"question": "q"}])
    assert (ei.value.path, ei.value.line, ei.value.field) == ("math-ai/minervamath:test", 2, "answer")
