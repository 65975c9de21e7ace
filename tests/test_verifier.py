"""Answer extraction, gold normalisation and the grader: in-process `judge` and the `Verifier` pool.

Everything here is real: real math-verify, real worker processes, real timeouts and killed workers.
One module-scoped pool serves most tests; tests that break workers start their own small pool.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.grading.extraction import lenient_answer, normalize_gold
from evals.grading.verifier import Outcome, Verdict, Verifier, judge

TIMEOUT_S = 2.0
# Grading this never finishes: sympy tries to evaluate a tower of powers when comparing it with 1.
STUCK = ("The result is \\boxed{9^{9^{9^{9}}}}", "1")


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout_s=TIMEOUT_S) as v:
        yield v


# ---------------------------------------------------------------------------------------------------
# lenient_answer: the opt-in fallback's extraction


def test_lenient_takes_the_answer_phrase_before_the_last_number():
    assert lenient_answer("The final answer is $\\frac{3}{4}$. Check: 8") == "\\frac{3}{4}"


@pytest.mark.parametrize(
    "response, answer",
    [
        ("2 + 3 = 5.", "5"),  # SmolLM2-135M style: the last number counts, the full stop does not
        ("The answer is **7**. Check: 8", "7"),
        ("Answer: 42\nLet me double check 9", "42"),
        ("the answer is not obvious; 6 + 1 = 7", "7"),  # phrase without a value falls to the last number
        ("It costs 2,125 dollars.", "2125"),
        ("so x = -3", "-3"),
        ("5-3=2", "2"),  # a binary minus is not a sign
        ("about 3/4 of them", "3/4"),
        ("pi is roughly 3.14.", "3.14"),
        ("the rope is 10cm long", "10"),
    ],
)
def test_lenient_answer(response, answer):
    assert lenient_answer(response) == answer


@pytest.mark.parametrize("response", ["", "I do not know.", "x2 + y"])
def test_lenient_finds_nothing(response):
    assert lenient_answer(response) is None


@given(st.integers(-(10**15), 10**15))
def test_lenient_takes_the_last_integer(a):
    assert lenient_answer(f"We compute step by step, 12 + 30 = 42, so the result is {a}.") == str(a)
    assert lenient_answer(f"In total {a:,} apples.") == str(a)


# ---------------------------------------------------------------------------------------------------
# normalize_gold


@pytest.mark.parametrize(
    "gold, canonical",
    [
        ("025", "25"),  # AIME24
        (27.0, "27"),  # AMC23 JSON float
        ("2,125", "2125"),  # GSM8K
        ("$\\frac{1}{2}$", "\\frac{1}{2}"),  # OlympiadBench
        ("\\(x+1\\)", "x+1"),
        ("$$5$$", "5"),
        ("\\boxed{3}", "3"),
        (" 2.50 ", "2.5"),
        (25, "25"),
        (0.5, "0.5"),
        (1e-07, "0.0000001"),  # not "1e-07", which LaTeX parsing reads as 1*e*(-7)
        ("-0", "0"),
        ("(1,234)", "(1,234)"),  # maybe a point: only a lone number loses its commas
        ("$x$ and $y$", "$x$ and $y$"),  # not one wrapped formula
        ("0,111", "0,111"),  # no thousands group starts with a lone 0: a decimal comma, left to Math-Verify
        ("11,13", "11,13"),  # a list (OlympiadBench)
        ("\\boxed{1} and \\boxed{2}", "1, 2"),  # gold-boxes
        ("$\\boxed{1}\\boxed{2}$", "1, 2"),
        ("$x = \\boxed{1}$ or $x = \\boxed{-\\frac{1}{2}}$", "1, -\\frac{1}{2}"),
        ("First \\boxed{3}. On reflection the answer is \\boxed{5}", "5"),  # only the final group
        ("1 000", "1000"),  # gold-space-groups
        ("-12 500.50", "-12500.5"),
        ("1 00", "1 00"),  # not thousands groups
        ("5\\", "5"),  # gold-stray-backslash
        ("$5\\$", "5"),
        ("x+1 \\\\", "x+1"),
        ("\\frac{1}{2}\\ ", "\\frac{1}{2}"),
    ],
)
def test_normalize_gold(gold, canonical):
    assert normalize_gold(gold) == canonical
    assert normalize_gold(canonical) == canonical  # idempotent: the Verifier normalises, then judge again


@pytest.mark.parametrize("gold", [None, "", "   ", "$$", True, float("nan"), float("inf"), [1], "\\", "$\\$"])
def test_ungradeable_gold_is_an_error(gold):
    with pytest.raises(ValueError):
        normalize_gold(gold)


@given(st.integers(0, 10**12), st.integers(0, 3))
def test_normalize_gold_numbers(a, zeros):
    assert normalize_gold("0" * zeros + str(a)) == str(a)
    assert normalize_gold(f"{a:,}") == str(a)
    assert normalize_gold(float(a)) == str(a)


# ---------------------------------------------------------------------------------------------------
# judge (in process) and the Verifier pool agree on these

C, W, U = Outcome.CORRECT, Outcome.WRONG, Outcome.UNPARSED
CASES = [
    # response, gold, outcome, extraction
    ("So the answer is \\boxed{42}.", "42", C, "boxed"),
    ("So the answer is \\boxed{41}.", "42", W, "boxed"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", C, "boxed"),  # nested braces
    ("\\boxed{\\frac{1}{2}}", "0.5", C, "boxed"),
    ("\\boxed{0.5}", "\\frac{1}{2}", C, "boxed"),
    ("\\boxed{25}", "025", C, "boxed"),
    ("\\boxed{27}", 27.0, C, "boxed"),
    ("\\boxed{2125}", "2,125", C, "boxed"),
    ("\\boxed{\\frac12}", "$\\frac{1}{2}$", C, "boxed"),
    ("\\boxed{26}", "025", W, "boxed"),
    ("The answer is $7$. First I guessed \\boxed{6}", "6", C, "boxed"),  # boxed answers come first
    ("2 + 3 = 5.", "5", C, "text"),  # Math-Verify's own unboxed extraction: the last side of the equation
    ("2 + 3 = 6.", "5", W, "text"),
    ("Answer: $\\frac{1}{2}$", "0.5", C, "text"),
    ("$$\n\\frac{1}{2}\n$$", "0.5", C, "text"),
    ("\\( x = \\frac{1}{2} \\)", "0.5", C, "text"),
    ("The answer is 1 000 000.", "1000000", C, "text"),
    ("so 4 + 4 = 8, \\boxed{}", "8", C, "text"),  # an empty box answers nothing
    ("I am not sure.", "5", U, "none"),
    ("\\boxed{!!}", "5", U, "boxed"),  # boxed, but nothing math-verify can read
]


@pytest.mark.parametrize("response, gold, outcome, extraction", CASES)
def test_judge(response, gold, outcome, extraction):
    v = judge(response, gold)
    assert (v.outcome, v.extraction, v.correct) == (outcome, extraction, outcome is C)
    assert (v.answer_key is None) == (outcome is U)


# Math-Verify finds no answer in these; only the opt-in lenient fallback does.
UNFOUND = [("The total is (12).", "12", C), ("total:5 apples", "5", C), ("The total is (12).", "13", W)]


@pytest.mark.parametrize("response, gold, outcome", UNFOUND)
def test_lenient_fallback_is_opt_in_and_flagged(response, gold, outcome):
    default = judge(response, gold)
    assert default.outcome is U and default.extraction != "lenient"
    lenient = judge(response, gold, lenient=True)
    assert (lenient.outcome, lenient.extraction) == (outcome, "lenient")


def test_lenient_never_overrides_an_answer_math_verify_found():
    # the last number is 7, but the box says 6: lenient mode grades the box like the default does
    for lenient in (False, True):
        v = judge("\\boxed{6}. Check: 7", "7", lenient=lenient)
        assert (v.outcome, v.extraction) == (W, "boxed")


def test_answer_key_groups_equivalent_answers():
    keys = {judge(f"\\boxed{{{a}}}", "1/2").answer_key for a in ("0.5", "\\frac{1}{2}", "\\frac12", "1/2")}
    assert keys == {"1/2"}
    assert judge("\\boxed{27.0}", "27").answer_key == judge("\\boxed{27}", "27").answer_key == "27"
    assert judge("\\boxed{3}", "2").answer_key != judge("\\boxed{4}", "2").answer_key


def test_judge_runs_outside_the_main_thread():
    # math-verify's default timeouts use signal.alarm, which raises ValueError outside the main thread.
    out: list = []
    t = threading.Thread(target=lambda: out.append(judge("\\boxed{\\frac{1}{2}}", "0.5")))
    t.start()
    t.join()
    assert out and out[0].outcome is C


def test_verify_batch_matches_judge_and_keeps_order(verifier):
    pairs = [(response, gold) for response, gold, _, _ in CASES]
    pairs += [(f"so we get \\boxed{{{i}}}", str(i if i % 3 else i + 1)) for i in range(60)]
    verdicts = verifier.verify_batch(pairs)
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert [(v.outcome, v.extraction) for v in verdicts[: len(CASES)]] == [(o, e) for _, _, o, e in CASES]
    rest = verdicts[len(CASES) :]
    assert [v.extracted for v in rest] == [str(i) for i in range(60)]
    assert [v.correct for v in rest] == [i % 3 != 0 for i in range(60)]


def test_stats_count_outcomes(verifier):
    before = verifier.stats.copy()
    verifier.verify_batch([("\\boxed{1}", "1"), ("\\boxed{2}", "1"), ("\\boxed{3}", "3"), ("nothing", "3")])
    after = verifier.stats
    assert (after[C] - before[C], after[W] - before[W], after[U] - before[U]) == (2, 1, 1)


def test_empty_batch(verifier):
    assert verifier.verify_batch([]) == []


def test_bad_gold_raises_before_grading(verifier):
    with pytest.raises(ValueError):
        verifier.verify_batch([("\\boxed{1}", "1"), ("\\boxed{1}", None)])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=10))
def test_integers_property(verifier, values):
    pairs = [(f"The answer is \\boxed{{{a}}}.", str(a)) for a in values]
    pairs += [(f"The answer is \\boxed{{{a}}}.", str(a + 1)) for a in values]
    outcomes = [v.outcome for v in verifier.verify_batch(pairs)]
    assert outcomes == [C] * len(values) + [W] * len(values)


def test_stuck_grading_times_out_and_pool_recovers(verifier):
    timeouts_before = verifier.stats[Outcome.TIMEOUT]
    start = time.monotonic()
    stuck, normal = verifier.verify_batch([STUCK, ("\\boxed{7}", "7")])
    elapsed = time.monotonic() - start
    assert stuck.outcome is Outcome.TIMEOUT and not stuck.correct
    assert stuck.extracted == "9^{9^{9^{9}}}" and stuck.extraction == "boxed"
    assert normal.outcome is C  # the other worker kept grading
    assert elapsed < TIMEOUT_S + 2.0
    assert verifier.stats[Outcome.TIMEOUT] == timeouts_before + 1
    # The stuck worker was killed and replaced: both workers grade again.
    verdicts = verifier.verify_batch([(f"\\boxed{{{i}}}", str(i)) for i in range(10)])
    assert all(v.correct for v in verdicts)


def test_callable_from_threads(verifier):
    results: dict[int, list[Verdict]] = {}

    def work(k: int) -> None:
        values = [k * 100 + i for i in range(20)]
        results[k] = verifier.verify_batch([(f"\\boxed{{{a}}}", str(a)) for a in values])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, 1, 2]
    for k, verdicts in results.items():
        assert [v.extracted for v in verdicts] == [str(k * 100 + i) for i in range(20)]
        assert all(v.correct for v in verdicts)


# ---------------------------------------------------------------------------------------------------
# Pools of their own


def _pool_workers() -> set[int]:
    """Live pebble workers of this process: children of the forkserver, i.e. our grandchildren."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            if fields[0] != "Z":
                parent[int(entry)] = int(fields[1])
    children = {pid for pid, ppid in parent.items() if ppid == os.getpid()}
    return {pid for pid, ppid in parent.items() if ppid in children}


def test_verifier_lenient_flag_counts():
    pairs = [(r, g) for r, g, _ in UNFOUND] + [("\\boxed{5}", "5")]
    with Verifier(workers=1, timeout_s=TIMEOUT_S) as v:
        default = v.verify_batch(pairs)
    with Verifier(workers=1, timeout_s=TIMEOUT_S, lenient=True) as v:
        lenient = v.verify_batch(pairs)
    assert [x.outcome for x in default] == [U, U, U, C]
    assert [(x.outcome, x.extraction) for x in lenient] == [(C, "lenient"), (C, "lenient"), (W, "lenient"), (C, "boxed")]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds worker processes through /proc")
def test_dead_workers_never_crash_a_batch(verifier, caplog):
    for _ in range(100):  # the module pool's workers, left alone (a replacement may still be starting)
        others = _pool_workers()
        if len(others) == 2:
            break
        time.sleep(0.05)
    with Verifier(workers=1, timeout_s=30) as v:
        assert v.verify("\\boxed{1}", "1").correct
        (worker,) = _pool_workers() - others

        # A worker that dies mid-grading (say, the OOM killer) gives a logged, counted UNPARSED verdict.
        out: list[Verdict] = []
        t = threading.Thread(target=lambda: out.append(v.verify(*STUCK)))
        t.start()
        time.sleep(1.0)  # let it get stuck
        os.kill(worker, signal.SIGKILL)
        t.join(timeout=10)
        assert out and out[0].outcome is U and out[0].extracted == "9^{9^{9^{9}}}"
        assert v.errors == 1
        assert any("grader failed" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        assert v.verify("\\boxed{2}", "2").correct  # pebble replaced the worker

        # pebble gives up on a pool whose worker dies while idle; the Verifier starts a fresh one.
        (worker,) = _pool_workers() - others
        os.kill(worker, signal.SIGKILL)
        time.sleep(0.5)
        assert [x.outcome for x in v.verify_batch([("\\boxed{3}", "3"), ("\\boxed{4}", "3")])] == [C, W]
        assert v.errors == 1
    with pytest.raises(RuntimeError):
        v.verify("\\boxed{1}", "1")
    v.close()  # idempotent


# ---------------------------------------------------------------------------------------------------
# Chunks and the cache


def test_hung_answer_in_a_chunk_kills_only_its_worker_and_the_rest_is_regraded():
    proc = os.path.isdir("/proc")  # workers are found through /proc
    others = _pool_workers() if proc else set()
    pairs = [(f"so \\boxed{{{i}}}", str(i if i % 4 else i + 1)) for i in range(40)]
    pairs.insert(13, STUCK)
    with Verifier(workers=2, timeout_s=1.0, chunk_size=8) as v:
        v.verify("\\boxed{1}", "1")  # workers warm
        before = _pool_workers() - others if proc else set()
        start = time.monotonic()
        verdicts = v.verify_batch(pairs)
        elapsed = time.monotonic() - start
        after = before
        for _ in range(40):  # pebble stops the cancelled worker from its own manager thread, soon after
            after = _pool_workers() - others if proc else set()
            if after != before:
                break
            time.sleep(0.05)
        assert v.stats[Outcome.TIMEOUT] == 1 and v.errors == 0
    assert verdicts[13].outcome is Outcome.TIMEOUT and verdicts[13].extracted == "9^{9^{9^{9}}}"
    rest = verdicts[:13] + verdicts[14:]
    assert [x.correct for x in rest] == [i % 4 != 0 for i in range(40)]
    # the watchdog stopped the hung answer after its 1 s; the other worker kept grading meanwhile
    assert elapsed < 1.0 + 2.0
    if proc:
        assert len(before) == 2 and len(before - after) == 1  # exactly one worker was killed


def test_identical_pairs_are_graded_once(verifier):
    pairs = [("The result is \\boxed{\\frac{7}{3}}", "\\frac{7}{3}")] * 5 + [("\\boxed{2}", "7/3")]
    hits = verifier.cache_hits
    first = verifier.verify_batch(pairs)
    assert verifier.cache_hits - hits == 4  # duplicates inside the batch
    again = verifier.verify_batch(pairs[:1])
    assert verifier.cache_hits - hits == 5  # and across batches
    assert [x.outcome for x in first] == [C] * 5 + [W] and again[0] == first[0]


def test_progress_counts_every_answer_once_as_it_finishes(verifier):
    # A whole file goes to the pool in one call; the progress bar must still end at the number of rows:
    # answers served from the cache, duplicates inside the batch, a timeout and ordinary ones.
    verifier.verify("\\boxed{4141}", "4141")  # cached before the batch
    pairs = [("\\boxed{4141}", "4141"), STUCK] + [("\\boxed{12345}", "12345")] * 3
    pairs += [(f"so \\boxed{{{i}}}", "31337") for i in range(20)]
    calls: list[int] = []
    verdicts = verifier.verify_batch(pairs, progress=calls.append)
    assert sum(calls) == len(pairs)
    assert calls[0] == 1  # the cached answer first, before any grading
    assert len(calls) == 1 + 1 + 1 + 20  # then each distinct pair as it finishes, its copies with it
    assert verdicts[1].outcome is Outcome.TIMEOUT and [v.correct for v in verdicts[2:5]] == [True] * 3


def test_timeouts_are_never_cached_and_always_counted():
    with Verifier(workers=1, timeout_s=1.0) as v:
        first = v.verify_batch([STUCK, STUCK])  # graded once, two verdicts
        second = v.verify(*STUCK)  # not served from the cache: graded (and timed out) again
        assert [x.outcome for x in first + [second]] == [Outcome.TIMEOUT] * 3
        assert v.stats[Outcome.TIMEOUT] == 3 and v.cache_hits == 1


# ---------------------------------------------------------------------------------------------------
# The SLL-first LaTeX parse gives latex2sympy2's own results


def _parse_both(latex: str) -> tuple[str, str]:
    from latex2sympy2_extended.latex2sympy2 import latex2sympy

    from evals.grading.verifier import sll_first_latex2sympy

    def run(f):
        try:
            return str(f(latex, is_real=True, normalization_config=None))
        except Exception as e:  # the same failure from both is agreement too
            return f"error: {type(e).__name__}"

    return run(sll_first_latex2sympy), run(latex2sympy)


def test_sll_first_parse_equals_the_stock_parse_on_typical_answers():
    from evals.grading.latex import WARMUP_ANSWERS

    for line in WARMUP_ANSWERS.strip().splitlines() + ["x^3-3x^2+3x-3", "(x+8)(2x+15)", "-6x^2+36x-48"]:
        sll, stock = _parse_both(line)
        assert sll == stock, line


@pytest.fixture(scope="module")
def math500_answers() -> list[str]:
    from tests.conftest import find_real_data_dir

    root = find_real_data_dir()
    if root is None:
        pytest.skip("real benchmark data (../shared/data or $TBRM_DATA_DIR) not present")
    path = root / "math500" / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"{path.name} of MATH500 not in the benchmark data folder")
    import json

    return [json.loads(line)["answer"] for line in path.read_text().splitlines() if line.strip()]


def test_sll_first_parse_equals_the_stock_parse_on_math_answers(math500_answers):
    for answer in math500_answers:
        sll, stock = _parse_both(answer)
        assert sll == stock, answer


# ---------------------------------------------------------------------------------------------------
# The plain-number short cut builds latex2sympy2's own objects, and leaves everything else to the parser


def _same_parse(latex: str) -> None:
    """sll_first_latex2sympy (short cut, SLL, LL) and stock latex2sympy give the same object: same type,
    same srepr (a Float's precision included), equal; or both fail."""
    from latex2sympy2_extended.latex2sympy2 import latex2sympy
    from sympy import srepr

    from evals.grading.verifier import sll_first_latex2sympy

    def run(f):
        try:
            x = f(latex, is_real=True, convert_degrees=False, normalization_config=None)
        except Exception as e:
            return "error", type(e).__name__
        try:  # srepr sorts arguments, which raises for some nan products ("-e\\frac{0}{0}")
            shown = srepr(x)
        except TypeError:
            shown = "unprintable: " + str(x)
        return type(x), shown, getattr(x, "_prec", None)

    ours, stock = run(sll_first_latex2sympy), run(latex2sympy)
    assert ours == stock, latex


_DIGITS = st.text("0123456789", min_size=1, max_size=25)
_SIGN = st.sampled_from(["", "-"])


@st.composite
def _number_latex(draw) -> str:
    a, b = draw(_DIGITS), draw(_DIGITS)
    form = draw(st.sampled_from(["int", "dec", "dec-no-int", "frac", "slash"]))
    body = {"int": a, "dec": f"{a}.{b}", "dec-no-int": f".{b}",
            "frac": f"\\{draw(st.sampled_from(['frac', 'dfrac', 'tfrac']))}{{{draw(_SIGN)}{a}}}{{{draw(_SIGN)}{b}}}",
            "slash": f"{a}/{b}"}[form]
    return draw(_SIGN) + body


@settings(max_examples=300, deadline=None)
@given(_number_latex())
def test_number_short_cut_builds_the_parsers_object(latex):
    from evals.grading.verifier import number_latex2sympy

    denominator = latex.rpartition("{" if "frac" in latex else "/")[2] if "/" in latex or "frac" in latex else "1"
    zero_denominator = not denominator.strip("-0}")
    assert (number_latex2sympy(latex) is None) == zero_denominator, latex
    _same_parse(latex)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.builds(lambda x, junk, at: x[:at] + junk + x[at:], _number_latex(),
              st.sampled_from([" ", "+", "\\%", "%", ".", ",", "{", "}", "x", "\\pi", "^2", "\\!", "٣", "e"]),
              st.integers(0, 30)),
    st.text("0123456789-./{}\\fracd ", max_size=20)))
def test_near_numbers_parse_as_the_parser_parses_them(latex):
    # Strings next to the short cut's forms ("1.", "\\frac12", "3/0", "5\\%", "1 000"): whichever path
    # takes them, the result is the parser's.
    _same_parse(latex)


def test_number_short_cut_on_benchmark_gold_answers():
    from evals.benchmarks import load_benchmark
    from evals.grading.verifier import number_latex2sympy
    from tests.conftest import find_real_data_dir

    root = find_real_data_dir()
    if root is None:
        pytest.skip("real benchmark data (../shared/data or $TBRM_DATA_DIR) not present")
    golds = []
    for name in ("math500", "gsm8k", "aime24", "aime25", "amc23"):
        try:
            golds += [normalize_gold(p.answer) for p in load_benchmark(name, data_dir=root)]
        except FileNotFoundError as e:
            pytest.skip(f"{name} not in the benchmark data folder: {e}")
    assert sum(number_latex2sympy(g) is not None for g in golds) > len(golds) // 2  # the short cut is used
    for gold in golds:
        _same_parse(gold)


# ---------------------------------------------------------------------------------------------------
# Answers told apart by evaluation (at a point) get math-verify's own symbolic verdict, without simplify()


def _symbolic_eq_both(a, b) -> tuple[bool, bool]:
    from math_verify.grader import sympy_symbolic_eq

    from evals.grading.verifier import _stock_symbolic_eq, disproving_symbolic_eq

    assert sympy_symbolic_eq is _stock_symbolic_eq  # this test process runs math-verify unpatched
    return disproving_symbolic_eq(a, b), _stock_symbolic_eq(a, b)


def _numeric_exprs():
    import sympy

    leaves = st.one_of(st.integers(-50, 50).map(sympy.Integer),
                       st.tuples(st.integers(-30, 30), st.integers(1, 12)).map(lambda t: sympy.Rational(*t)),
                       st.sampled_from([sympy.pi, sympy.E, sympy.sqrt(2), sympy.sqrt(3), sympy.Rational(1, 3)]),
                       # real symbols as latex2sympy2 makes them (evaluated at a point), and a complex one (never)
                       st.sampled_from([sympy.Symbol("x", real=True), sympy.Symbol("y", real=True), sympy.Symbol("z")]))

    def safe(build):
        def run(args):
            try:
                return build(*args)
            except Exception:  # sympy refuses some unevaluated combinations (e.g. asserts in Mul)
                return None
        return run

    def grow(children):
        pair = st.tuples(children, children)
        return st.one_of(pair.map(safe(lambda x, y: sympy.Add(x, y, evaluate=False))),
                         pair.map(safe(lambda x, y: sympy.Mul(x, y, evaluate=False))),
                         st.tuples(children, st.integers(-3, 3)).map(
                             safe(lambda x, k: sympy.Pow(x, k, evaluate=False))),
                         st.tuples(st.sampled_from([sympy.sqrt, sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan,
                                                    sympy.Abs]), children).map(safe(lambda f, x: f(x))),
                         ).filter(lambda x: x is not None)

    return st.recursive(leaves, grow, max_leaves=5)


@settings(max_examples=300, deadline=None)
@given(_numeric_exprs(), _numeric_exprs(), st.booleans())
def test_disproving_symbolic_eq_gives_math_verifys_answer(a, b, same):
    import sympy

    if same:  # an equal pair written differently, so that "equal" is tested too
        b = sympy.expand(sympy.radsimp(a))
    # Stock simplify() can run for minutes on a random trig expression: an example past 3 s is inconclusive (this
    # runs in pytest's main thread, where SIGALRM works; the verifier itself bounds time by killing workers).
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        ours, stock = _symbolic_eq_both(a, b)
    except (ZeroDivisionError, ValueError, _TooSlow):
        return
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert ours == stock, (a, b)


class _TooSlow(Exception):
    pass


def _too_slow(*_):
    raise _TooSlow


def test_disproving_symbolic_eq_on_benchmark_answers(math500_answers):
    # Every pair among MATH500 answers that parse to plain numbers (and each against itself): the short cut
    # decides the unequal ones and agrees with simplify() on all of them.
    from latex2sympy2_extended.latex2sympy2 import latex2sympy

    from evals.grading.verifier import certainly_unequal

    numbers = []
    for answer in math500_answers:
        try:
            x = latex2sympy(normalize_gold(answer), is_real=True, normalization_config=None)
        except Exception:
            continue
        if getattr(x, "is_number", False) and not x.is_Integer and len(numbers) < 45:
            numbers.append(x)
    decided = 0
    for a in numbers:
        for b in numbers:
            decided += certainly_unequal(a, b)
            ours, stock = _symbolic_eq_both(a, b)
            assert ours == stock, (a, b)
    assert decided > len(numbers) ** 2 // 2


def test_lenient_verdicts_are_counted_in_grade_summaries(tmp_path):
    import json

    from evals.grading.grade import grade_file

    f = tmp_path / "gens.jsonl"
    rows = [{"response": r, "answer": g} for r, g, _ in UNFOUND] + [{"response": "\\boxed{4}", "answer": "4"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    default = grade_file(f, out_dir=tmp_path / "default", workers=1, progress=False, print_table=False)
    lenient = grade_file(f, out_dir=tmp_path / "lenient", lenient=True, workers=1, progress=False, print_table=False)
    assert (default["lenient"], default["lenient_verdicts"], default["outcomes"]["correct"]) == (False, 0, 1)
    assert (lenient["lenient"], lenient["lenient_verdicts"], lenient["outcomes"]["correct"]) == (True, 3, 3)
    graded = [json.loads(x) for x in (tmp_path / "lenient" / "graded.jsonl").read_text().splitlines()]
    assert [g["extraction"] for g in graded] == ["lenient", "lenient", "lenient", "boxed"]
