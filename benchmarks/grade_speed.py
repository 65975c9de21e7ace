"""Benchmark: answers graded per second by the shared verifier on 10,000 realistic responses, including
adversarial ones that must time out, side by side with plain Math-Verify in the same process pool.

    python benchmarks/grade_speed.py                    # 10,000 responses, 2 workers, 2 s per-answer limit
    python benchmarks/grade_speed.py --n 2000           # a quick slice

The responses are built from the benchmark data in ../shared/data (never copied into the repo), as an RL
step or an avg@k evaluation sees them: prompts (MATH500, MATH train, GSM8K, AIME, AMC, Minerva, OlympiadBench)
with 4 responses each (the paper's n = 4), every response drawn from
- the worked solution (MATH: boxed LaTeX; GSM8K: "... The answer is N."), 45%;
- the gold as a short final answer in the forms models write ("the final answer is $\\boxed{X}$",
  "Answer: $X$"), 20%;
- the worked solution ending in another problem's answer, 25%, or a short wrong answer, 10%;
plus real SmolLM2-135M outputs (tests/fixtures/smollm2_outputs.jsonl: unboxed prose) and adversarial
responses: power towers sympy would evaluate for hours (they must come back as TIMEOUT), and ones that are
merely huge (a 200 kB response, a thousand boxes, deeply nested braces; these may time out too). Identical
(response, gold) pairs occur as they do among rollouts.

Graders, each on the same responses in the same order, all in one `verify_batch` call as `tbrm grade` sends a
file, unless said otherwise:
- ours: `Verifier()` (default settings, with its cache of identical pairs);
- ours in batches of 512 (how `tbrm grade` sent files before): each batch ends waiting for its slowest answer,
  a hung one for its whole timeout, while the other worker idles;
- ours, cache off, in batches of 512: cache_size=0 (no cache across batches; duplicates within a batch are still
  graded once), to show what the cache buys;
- ours without the adversarial responses: what realistic model outputs cost, without the hung answers' timeouts;
- plain Math-Verify: `Verifier(plain=True)`, library defaults, same pool, chunks and timeouts (and the same
  parser speed-ups in the workers);
- plain Math-Verify as users call it, and ours (`judge`), each in a fresh process of its own on one core, on the
  first 2,000 non-adversarial ones, timed by the wall clock and by CPU time (less sensitive to other jobs).

Each grader is timed by the wall clock and by CPU time: for the pool, this process's plus every worker's
(hung answers burn theirs until they are killed), which other jobs on a shared machine inflate far less.

Results: benchmarks/results/grade_speed.json and .md, with the load average (the machine is shared; other jobs
inflate the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.fixture_outputs import smollm2_outputs  # noqa: E402

# sympy tries to evaluate these when comparing with the gold: hours of big-integer arithmetic.
TOWERS = ["9^{9^{9^{9}}}", "8^{8^{8^{8}}}", "7^{7^{7^{7}}}", "9^{8^{9^{8}}}", "8^{9^{8^{9}}}", "7^{9^{7^{9}}}"]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wrong_answer(solution: str, answer: str) -> str:
    """The worked solution with its last box replaced by `answer` (a wrong final answer)."""
    i = solution.rfind("\\boxed")
    if i < 0:
        return f"{solution}\nThe answer is {answer}."
    return solution[:i] + f"\\boxed{{{answer}}}."


def build_responses(data_dir: Path, n: int, n_adversarial: int, samples: int = 4, seed: int = 0) -> list[dict]:
    """`n` rows {kind, problem, response, gold}: prompts with `samples` responses each, as in an RL step or an
    avg@k evaluation (the paper's n = 4), then the adversarial ones; shuffled."""
    from evals.benchmarks import load_benchmark

    rng = random.Random(seed)
    problems = []  # (problem id, worked solution, gold)
    for r in _read_jsonl(data_dir / "math500" / "test.jsonl"):
        problems.append((r["unique_id"], r["solution"], r["answer"]))
    for i, r in enumerate(_read_jsonl(data_dir / "gsm8k" / "test.jsonl")):
        body, _, gold = r["answer"].rpartition("####")
        body = re.sub(r"<<[^>]*>>", "", body).strip()  # GSM8K's calculator annotations
        problems.append((f"gsm8k/{i}", f"{body}\nThe answer is {gold.strip()}.", gold.strip()))
    for i, r in enumerate(_read_jsonl(data_dir / "math_train" / "train.jsonl")):
        problems.append((f"math_train/{i}", r["solution"], r["answer"]))
    for name in ("aime24", "aime25", "amc23", "minerva", "olympiadbench"):
        for p in load_benchmark(name, data_dir=data_dir):
            problems.append((p.id, f"The final answer is $\\boxed{{{p.answer}}}$.", p.answer))
    problems = [p for p in problems if p[2].strip()]  # a few MATH train records have no final answer
    rng.shuffle(problems)
    other_golds = [g for _, _, g in problems]
    smollm2 = smollm2_outputs(data_dir)  # golds from data_dir: the fixture keeps no benchmark data
    short_forms = ["Therefore, the final answer is $\\boxed{{{}}}$.", "Answer: ${}$", "So we get \\boxed{{{}}}.",
                   "The final answer is $\\boxed{{{}}}$. I hope it is correct."]

    rows: list[dict] = []
    for pid, solution, gold in problems[: (n - n_adversarial - len(smollm2)) // samples]:
        for _ in range(samples):
            u = rng.random()
            if u < 0.45:
                kind, response = "worked-solution", solution
            elif u < 0.65:
                kind, response = "short-answer", rng.choice(short_forms).format(gold)
            elif u < 0.9:
                kind, response = "wrong-final-answer", _wrong_answer(solution, rng.choice(other_golds))
            else:
                kind, response = "short-wrong-answer", rng.choice(short_forms).format(rng.choice(other_golds))
            rows.append({"kind": kind, "problem": pid, "response": response, "gold": gold})
    rows += [{"kind": "smollm2", "problem": r.get("id", ""), "response": r["response"], "gold": r["gold"]}
             for r in smollm2]
    rows = rows[: n - n_adversarial]
    adversarial = [{"kind": "adversarial-timeout", "response": f"The result is \\boxed{{{TOWERS[i % len(TOWERS)]}}}",
                    "gold": str(i + 1)} for i in range(max(0, n_adversarial - 3))]
    adversarial += [
        {"kind": "adversarial-size", "response": "Let me think. " * 15000 + "\\boxed{7}", "gold": "7"},
        {"kind": "adversarial-size", "response": " ".join(f"\\boxed{{{i}}}" for i in range(1000)), "gold": "999"},
        {"kind": "adversarial-size", "response": "\\boxed{" + "{" * 500 + "1" + "}" * 500 + "}", "gold": "1"},
    ][:n_adversarial]
    rows += [dict(r, problem=f"adversarial/{i}") for i, r in enumerate(adversarial)]
    rng.shuffle(rows)
    return rows


def _reaped_workers_cpu_s() -> float | None:
    """CPU seconds of every grader worker that has exited so far: the forkserver's cutime + cstime (it reaps
    the workers it forks, killed ones included). None where that cannot be read (no forkserver, no /proc)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def run_grader(name: str, rows: list[dict], workers: int, timeout_s: float, batch: int | None = None,
               **verifier_kwargs) -> dict:
    from evals.grading.verifier import Verifier

    pairs = [(r["response"], r["gold"]) for r in rows]
    with Verifier(workers=workers, timeout_s=timeout_s, **verifier_kwargs) as v:
        v.verify_batch([("\\boxed{1}", "1"), ("\\boxed{2}", "1")])  # workers started and warm
        v.cache_hits = 0
        workers_cpu = _reaped_workers_cpu_s()
        start, parent_cpu = time.perf_counter(), time.process_time()
        verdicts = v.verify_batch(pairs) if batch is None else [
            x for i in range(0, len(pairs), batch) for x in v.verify_batch(pairs[i : i + batch])]
        seconds, parent_cpu = time.perf_counter() - start, time.process_time() - parent_cpu
        cache_hits, errors = v.cache_hits, v.errors
    time.sleep(0.5)  # the forkserver reaps the closed pool's workers
    after = _reaped_workers_cpu_s()
    # All CPU the grading took: this process and the workers (their start-up and warm-up batch included, and
    # the CPU that hung answers burn until they are killed).
    cpu = parent_cpu + after - workers_cpu if workers_cpu is not None and after is not None else None
    outcomes = Counter(x.outcome.value for x in verdicts)
    adversarial = [x.outcome.value for x, r in zip(verdicts, rows) if r["kind"] == "adversarial-timeout"]
    by_kind: dict[str, Counter] = {}
    for x, r in zip(verdicts, rows):
        by_kind.setdefault(r["kind"], Counter())[x.outcome.value] += 1
    cpu_text = f", {cpu:.1f} CPU-s ({len(pairs) / cpu:.0f} answers/CPU-s)" if cpu else ""
    print(f"{name}: {len(pairs)} answers in {seconds:.1f} s = {len(pairs) / seconds:.0f} answers/s{cpu_text}; "
          f"outcomes {dict(outcomes)}; cache hits {cache_hits}", flush=True)
    cpu_fields = {"cpu_seconds": round(cpu, 2), "answers_per_cpu_second": round(len(pairs) / cpu, 1)} if cpu else {}
    return {"grader": name, "answers": len(pairs), "seconds": round(seconds, 2),
            "answers_per_second": round(len(pairs) / seconds, 1), **cpu_fields, "outcomes": dict(outcomes),
            "cache_hits": cache_hits, "errors": errors,
            "adversarial_timed_out": f"{adversarial.count('timeout')}/{len(adversarial)}",
            "outcomes_by_kind": {k: dict(v) for k, v in by_kind.items()},
            "verdicts": [x.outcome.value for x in verdicts]}


def _time_in_process(name: str, sample: list[dict]) -> dict:
    """One in-process grader over `sample`, in a fresh process (see `run_in_process`)."""
    if name == "plain":
        from math_verify import parse, verify

        from evals.grading.extraction import normalize_gold

        label = "plain Math-Verify, in process, 1 core"
        parse("\\boxed{1}")  # build the grammar first

        def grade(r):
            return bool(verify(parse(f"\\boxed{{{normalize_gold(r['gold'])}}}"), parse(r["response"])))
    else:
        import evals.grading._warm_grader  # noqa: F401  (what a pool worker starts from: speed-ups on, parser warm)
        from evals.grading.verifier import judge

        label = "ours, in process, 1 core"
        judge("\\boxed{1}", "1")

        def grade(r):
            return judge(r["response"], r["gold"]).correct
    wall, cpu = time.perf_counter(), time.process_time()
    correct = sum(grade(r) for r in sample)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label}: {len(sample)} answers in {wall:.1f} s wall ({len(sample) / wall:.0f} answers/s), "
          f"{cpu:.1f} s CPU ({len(sample) / cpu:.0f} answers/CPU-s); {correct} correct", flush=True)
    return {"grader": label, "answers": len(sample), "seconds": round(wall, 2),
            "answers_per_second": round(len(sample) / wall, 1), "cpu_seconds": round(cpu, 2),
            "answers_per_cpu_second": round(len(sample) / cpu, 1),
            "outcomes": {"correct": correct, "wrong": "-", "unparsed": "-", "timeout": "-"},
            "cache_hits": 0, "errors": 0, "adversarial_timed_out": "-"}


def run_in_process(rows: list[dict], n: int) -> list[dict]:
    """Plain Math-Verify and ours side by side without a pool, one core, on the first `n` responses that are not
    adversarial, timed by the wall clock and by CPU time (time.process_time), which other jobs on a shared machine
    inflate far less.

    Each runs in a fresh process of its own: latex2sympy2's ANTLR parser builds its prediction cache (DFA) class-wide
    as it parses, so a grader run after another in one process would parse the same answers with the other's
    warm cache and look faster than it is.

    Plain Math-Verify runs as users call it: `verify(parse(gold), parse(response))` with the library's own settings
    (signal-based timeouts). Ours is `judge` with the speed-ups its pool workers start with
    (`evals.grading.verifier._speed_up_math_verify`, the warmed parser).
    """
    import multiprocessing

    sample = [r for r in rows if not r["kind"].startswith("adversarial")][:n]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(_time_in_process, (name, sample)) for name in ("plain", "ours")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="responses in all, adversarial included")
    ap.add_argument("--adversarial", type=int, default=8, help="adversarial responses among them (all but 3 time out)")
    ap.add_argument("--samples", type=int, default=4, help="responses per prompt")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=2.0, help="per-answer limit in seconds")
    ap.add_argument("--in-process", type=int, default=2000,
                    help="responses for the in-process runs of plain Math-Verify and ours (one core)")
    ap.add_argument("--data-dir", help="benchmark data folder (default: $TBRM_DATA_DIR or ../shared/data)")
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args()

    from evals.benchmarks import data_dir

    rows = build_responses(Path(a.data_dir) if a.data_dir else data_dir(), a.n, a.adversarial, a.samples)
    kinds = Counter(r["kind"] for r in rows)
    print(f"{len(rows)} responses: {dict(kinds)}", flush=True)
    load_before = os.getloadavg()
    realistic = [r for r in rows if not r["kind"].startswith("adversarial")]
    results = [run_grader("ours", rows, a.workers, a.timeout),
               run_grader("ours, in batches of 512", rows, a.workers, a.timeout, batch=512),
               run_grader("ours, cache off, in batches of 512 (duplicates within a batch still graded once)", rows,
                          a.workers, a.timeout, batch=512, cache_size=0),
               run_grader("ours, without the adversarial responses", realistic, a.workers, a.timeout),
               run_grader("plain Math-Verify", rows, a.workers, a.timeout, plain=True)]
    results += run_in_process(rows, a.in_process)
    load_after = os.getloadavg()
    by_name = {r["grader"]: r for r in results}
    ours, plain = by_name["ours"]["verdicts"], by_name["plain Math-Verify"]["verdicts"]
    flips = Counter((o, p) for o, p, r in zip(ours, plain, rows) if (o == "correct") != (p == "correct"))
    by_kind = {k: sum((o == "correct") != (p == "correct") for o, p, r in zip(ours, plain, rows) if r["kind"] == k)
               for k in kinds}
    for r in results:
        r.pop("verdicts", None)
    out = {"responses": len(rows), "kinds": dict(kinds), "workers": a.workers, "timeout_s": a.timeout,
           "graders": results,
           "ours_vs_plain": {"agreement": 1 - sum(flips.values()) / len(rows),
                             "flips": {f"ours {o} / plain {p}": c for (o, p), c in flips.items()},
                             "flips_by_kind": by_kind},
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after],
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from evals.io import atomic_write_json, atomic_write_text

    atomic_write_json(out_dir / "grade_speed.json", out)
    lines = ["| grader | answers | seconds | answers/s | CPU s | answers/CPU-s | correct | wrong | unparsed | timeout "
             "| "
             "cache hits | adversarial timed out |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        o = r["outcomes"]
        cpu = f"{r['cpu_seconds']} | {r['answers_per_cpu_second']:.0f}" if "cpu_seconds" in r else "- | -"
        lines.append(f"| {r['grader']} | {r['answers']} | {r['seconds']} | {r['answers_per_second']:.0f} | {cpu} | "
                     f"{o.get('correct', 0)} | {o.get('wrong', 0)} | {o.get('unparsed', 0)} | {o.get('timeout', 0)} | "
                     f"{r['cache_hits']} | {r['adversarial_timed_out']} |")
    lines += ["", f"Responses: {', '.join(f'{k} {v}' for k, v in kinds.items())}. {a.workers} worker processes, "
              f"{a.timeout} s per-answer limit. Load average (1/5/15 min) before {out['load_average_before']}, "
              f"after {out['load_average_after']} on {os.cpu_count()} CPUs (shared machine).",
              "", f"Ours vs plain Math-Verify on these responses: {100 * out['ours_vs_plain']['agreement']:.2f}% "
              f"agreement; flips {out['ours_vs_plain']['flips']}; by kind "
              f"{ {k: v for k, v in by_kind.items() if v} }."]
    atomic_write_text(out_dir / "grade_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
