"""Several seeds per method: the seed-level statistics (reports/seeds.py) on synthetic scores with known effects,
and `tbrm report` over synthetic run folders (real files, written here) that differ only in the seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from reports.primaries import PRIMARY_COLUMNS
from reports.seeds import seed_mean, seed_paired
from reports.stats import holm, mcnemar

TRUE_SD_SEED = 0.08


def simulate(rng, n_seeds: int, n_problems: int, shift: float = 0.0, seed_sd: float = TRUE_SD_SEED,
             difficulty=None) -> np.ndarray:
    """0/1 scores [seeds, problems]: problem p solved with probability clip(q_p + u_s + shift), q_p ~ U(0.1, 0.9)
    the problem's easiness, u_s ~ N(0, seed_sd) the training seed's luck."""
    q = rng.uniform(0.1, 0.9, n_problems) if difficulty is None else difficulty
    u = rng.normal(0.0, seed_sd, n_seeds)
    prob = np.clip(q[None, :] + u[:, None] + shift, 0.0, 1.0)
    return (rng.random((n_seeds, n_problems)) < prob).astype(float)


def test_seed_mean_is_the_mean_over_seeds_with_per_seed_scores():
    m = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], dtype=float)  # seeds score 0.75, 0.25, 0.75
    r = seed_mean(m)
    assert r.value == pytest.approx(7 / 12) and r.per_seed == pytest.approx([0.75, 0.25, 0.75])
    assert r.ci_low < r.value < r.ci_high and (r.n_seeds, r.n_problems) == (3, 4)


def test_seed_mean_interval_by_hand_inside_0_and_1():
    """avg@k scores, 3 seeds x 4 problems, an interval well inside (0, 1), so nothing is clipped and the df and
    quantile are exercised. By hand (exact fractions): grand mean 41/80; per-seed means 41/80, 9/16, 37/80 with
    variance 1/400, so the seed term is 1/1200; per-problem means 1/2, 7/15, 3/5, 29/60 with variance 31/8640 and
    two-way residual mean square 1/1800, so the problems' share is (31/8640 - 1/5400) / 4 = 49/57600;
    t_{0.975, 2} = 4.302653 (S - 1 = 2 df; 3 df would give 3.182446)."""
    m = np.array([[0.50, 0.50, 0.60, 0.45], [0.55, 0.50, 0.65, 0.55], [0.45, 0.40, 0.55, 0.45]])
    r = seed_mean(m)
    half = 4.302653 * (1 / 1200 + 49 / 57600) ** 0.5
    assert 0.0 < r.ci_low < r.ci_high < 1.0
    assert r.value == pytest.approx(41 / 80, abs=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((41 / 80 - half, 41 / 80 + half), abs=1e-6)
    assert r.method == "t, seeds x problems"


def test_seed_mean_from_10_seeds_widens_to_the_bootstrap_t_when_seeds_are_skewed():
    """Eight seeds near the floor and two that took off: the symmetric bootstrap-t quantile over seeds is wider than
    t_{0.975, 9}, and the interval uses it; ten seeds spread evenly keep the t interval."""
    skewed = np.repeat(np.array([[0.04], [0.05], [0.06], [0.05], [0.04], [0.06], [0.05], [0.05], [0.30], [0.32]]),
                       2, axis=1)
    r = seed_mean(skewed)
    t_half = 2.262157 * np.std(skewed.mean(axis=1), ddof=1) / np.sqrt(10)
    assert r.method.startswith("symmetric bootstrap-t") and r.ci_high - r.value > 1.2 * t_half
    even = np.repeat(np.linspace(0.3, 0.5, 10)[:, None], 2, axis=1)
    r = seed_mean(even)
    half = 2.262157 * np.std(even.mean(axis=1), ddof=1) / np.sqrt(10)
    assert half <= r.ci_high - r.value < 1.05 * half  # never narrower than t; about t where the seeds are even
    nine = seed_mean(even[:9])  # below 10 seeds: t alone
    assert nine.method == "t, seeds x problems"
    assert nine.ci_high - nine.value == pytest.approx(2.306004 * np.std(even[:9].mean(axis=1), ddof=1) / 3, rel=1e-6)


def test_seed_interval_of_an_accuracy_stays_within_0_and_1():
    """Seeds far apart near 0% (the committed off-policy report's on-policy TBRM: 37%, 20%, 1%): the t interval
    reaches below 0, but the interval of an accuracy does not leave [0, 1]."""
    rng = np.random.default_rng(5)
    low = (rng.random((3, 100)) < np.array([[0.37], [0.20], [0.01]])).astype(float)
    r = seed_mean(low)
    assert r.ci_low == 0.0 and r.value < r.ci_high < 1.0
    r = seed_mean(1.0 - low)
    assert r.ci_high == 1.0 and 0.0 < r.ci_low < r.value
    # scores that are not accuracies are left unclipped
    assert seed_mean(low - 0.5).ci_low < -0.5


def test_seed_interval_widens_with_seed_spread_that_a_problem_bootstrap_ignores():
    rng = np.random.default_rng(3)
    q = rng.uniform(0.1, 0.9, 200)
    calm = simulate(rng, 4, 200, seed_sd=0.0, difficulty=q)
    noisy = simulate(rng, 4, 200, seed_sd=0.15, difficulty=q)
    w = lambda r: r.ci_high - r.ci_low  # noqa: E731
    assert w(seed_mean(noisy)) > 1.5 * w(seed_mean(calm))


def test_seed_interval_covers_the_true_value_at_about_the_nominal_rate():
    """200 simulated 3-seed x 100-problem experiments: the 95% interval covers the true expected accuracy (over
    new seeds AND new problems) about 95% of the time."""
    rng = np.random.default_rng(0)
    truth = float(np.clip(rng.uniform(0.1, 0.9, 2_000_000) + rng.normal(0, TRUE_SD_SEED, 2_000_000), 0, 1).mean())
    reps = 200
    covered = sum(_covers(seed_mean(simulate(rng, 3, 100)), truth) for i in range(reps))
    rate = covered / reps
    print(f"coverage of the nominal 95% seed-mean t interval: {rate:.3f} over {reps} simulations")
    assert 0.92 <= rate <= 1.0


def _covers(r, truth: float) -> bool:
    return r.ci_low <= truth <= r.ci_high


def test_a_real_difference_between_methods_is_found():
    rng = np.random.default_rng(1)
    q = rng.uniform(0.1, 0.9, 200)
    a = simulate(rng, 3, 200, shift=0.2, seed_sd=0.04, difficulty=q)
    b = simulate(rng, 3, 200, seed_sd=0.04, difficulty=q)
    r = seed_paired(a, b)
    assert r.p_value < 0.05 and r.ci_low > 0.0 and r.diff == pytest.approx(a.mean() - b.mean())
    assert r.details["per_seed_a"] == pytest.approx(list(a.mean(axis=1)))
    s = seed_paired(b, a)  # antisymmetric
    assert s.diff == pytest.approx(-r.diff) and s.p_value < 0.05


def test_null_differences_are_not_flagged_once_corrected():
    """Four methods with the same true accuracy, all 6 pairs compared, 40 times over: after Holm, a family
    with any false 'ahead' is rare (family-wise error <= 5% by design; allow Monte Carlo slack)."""
    rng = np.random.default_rng(2)
    families_flagged = raw_flags = 0
    for rep in range(40):
        q = rng.uniform(0.1, 0.9, 100)
        methods = [simulate(rng, 3, 100, difficulty=q) for _ in range(4)]
        ps = [seed_paired(methods[i], methods[j]).p_value
              for i in range(4) for j in range(i + 1, 4)]
        raw_flags += sum(p < 0.05 for p in ps)
        families_flagged += any(p < 0.05 for p in holm(ps))
    print(f"null: {raw_flags} raw p<0.05 of 240 comparisons, {families_flagged}/40 families flagged after Holm")
    assert families_flagged <= 5


def test_seed_level_test_is_not_fooled_by_one_lucky_seed():
    """Seeds of A scatter widely: one seed each, compared per problem (McNemar), looks decisive; over the seeds
    the difference is not distinguishable."""
    rng = np.random.default_rng(4)
    q = rng.uniform(0.2, 0.8, 300)
    a = np.stack([simulate(rng, 1, 300, shift=s, seed_sd=0.0, difficulty=q)[0] for s in (0.15, -0.12, -0.05)])
    b = simulate(rng, 3, 300, seed_sd=0.0, difficulty=q)
    assert mcnemar(a[0] == 1, b[0] == 1).p_value < 0.001  # the anecdote
    assert seed_paired(a, b).p_value > 0.05


def test_paired_seeds_is_scipys_paired_t_and_seed_paired_uses_it_only_when_matched():
    from scipy import stats as sps

    from reports.seeds import paired_seeds

    rng = np.random.default_rng(12)
    q = rng.uniform(0.1, 0.9, 120)
    a = simulate(rng, 4, 120, shift=0.03, difficulty=q)
    b = simulate(rng, 4, 120, difficulty=q)
    r = paired_seeds(a, b)
    ref = sps.ttest_rel(a.mean(axis=1), b.mean(axis=1))
    ci = ref.confidence_interval(0.95)
    assert r.test == "paired_seeds_t" and r.details["df"] == 3
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert r.details["r"] == pytest.approx(np.corrcoef(a.mean(axis=1), b.mean(axis=1))[0, 1])
    assert seed_paired(a, b, matched=True).test == "paired_seeds_t"
    assert seed_paired(a, b).test == "welch_t"  # not matched: Welch
    assert seed_paired(a, b[:3], matched=True).test == "welch_t"  # different seed counts cannot pair
    with pytest.raises(ValueError, match="same"):
        paired_seeds(a, b[:3])
    with pytest.raises(ValueError, match=">= 2 seed pairs"):
        paired_seeds(a[:1], b[:1])


def test_seed_paired_rejects_unpaired_problems():
    with pytest.raises(ValueError, match="paired by problem"):
        seed_paired(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="matrix"):
        seed_mean(np.ones(3))


# ---------------------------------------------------------------------------------------------- report


def write_eval_run(path: Path, method: str, n: int, seed: int, outcomes: np.ndarray, bench: str = "heldout") -> Path:
    """An eval run folder as `tbrm eval` writes it (summary.json + samples/<bench>.jsonl) for a checkpoint that is
    no longer on disk: its train_config travels in the summary (`trained_with`)."""
    from evals.runner import summarize_rows
    from evals.engines.base import SamplingParams

    rows = [{"problem_id": f"{bench}/{i}", "sample_index": 0, "outcome": "correct" if ok else "wrong",
             "response": "", "num_tokens": 1, "finish_reason": "stop", "extraction": "boxed", "extracted": "1",
             "answer_key": "1", "batch_index": 0, "gen_seconds": 1.0, "verify_seconds": 0.1}
            for i, ok in enumerate(outcomes)]
    (path / "samples").mkdir(parents=True)
    (path / "samples" / f"{bench}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = {"algorithm": method, "rollouts_per_prompt": n, "seed": seed, "model": "smollm2", "steps": 10,
               "lr": 2e-5}
    ckpt = f"../../train/{method}-n{n}-seed{seed}/checkpoint-10"
    summary = {"model": ckpt, "model_path": ckpt, "trained_with": trained,
               "fingerprint": {"model": "checkpoint-10", "kind": "local", "sha256_sample": f"{method}{n}{seed}"},
               "template": {"name": "qwen-math"}, "versions": {},
               "benchmarks": {bench: summarize_rows(rows, SamplingParams(n=1, temperature=0.0, max_new_tokens=8))}}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def write_train_run(path: Path, method: str, n: int, seed: int, accs: list[float]) -> Path:
    path.mkdir(parents=True)
    cfg = {"algorithm": method, "rollouts_per_prompt": n, "seed": seed, "model": "smollm2", "steps": len(accs) - 1,
           "prompts_per_step": 8}
    (path / "train_config.json").write_text(json.dumps(cfg))
    rows = [{"step": i, "eval/heldout/accuracy": a, **({"reward/mean": a, "loss": 1.0, "time/step": 1.0,
                                                         "rollouts": 8 * n * i} if i else {})}
            for i, a in enumerate(accs)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_over_seeds_shows_means_per_seed_scores_and_seed_level_verdicts(tmp_path):
    from reports.build import build_report
    from evals.portable import leaks

    rng = np.random.default_rng(7)
    q = rng.uniform(0.1, 0.9, 150)
    runs, truth = [], {}
    luck = rng.normal(0.0, TRUE_SD_SEED, 3)  # seed k of every method draws the same prompts: shared luck
    for method, n, shift in (("tbrm", 1, 0.25), ("grpo", 4, 0.0), ("ppo", 1, 0.0)):
        mats = np.concatenate([simulate(rng, 1, 150, shift=shift + u, seed_sd=0.0, difficulty=q) for u in luck])
        truth[method] = mats
        for s in range(3):
            runs.append(write_eval_run(tmp_path / "evals" / f"{method}-seed{s}", method, n, s, mats[s]))
            runs.append(write_train_run(tmp_path / "train" / f"{method}-n{n}-seed{s}", method, n, s,
                                        [0.1, 0.2 + 0.05 * s, 0.3 + 0.1 * s]))
    out = tmp_path / "report"
    res = build_report([str(r) for r in runs], out, title="seeds")
    t1 = {r["label"]: r for r in _csv(out / "tables" / "table1_seeds.csv")}
    assert set(t1) == {"TBRM n=1", "GRPO n=4", "PPO n=1"}
    assert t1["TBRM n=1"]["n_seeds"] == "3" and t1["TBRM n=1"]["seeds"] == "0 1 2"
    assert float(t1["TBRM n=1"]["heldout_mean"]) == pytest.approx(truth["tbrm"].mean())
    assert [float(x) for x in t1["GRPO n=4"]["heldout_per_seed"].split()] == pytest.approx(
        list(truth["grpo"].mean(axis=1)), abs=1e-5)
    pairs = {(p["method_a"], p["method_b"]): p for p in _csv(out / "tables" / "paired_seeds.csv")}
    assert len(pairs) == 3
    real = pairs[("TBRM n=1", "GRPO n=4")]
    assert real["verdict"] == "TBRM n=1 ahead" and float(real["p_holm"]) < 0.05
    assert "over 3+3 seeds and 150 problems" in real["sentence"] and "Holm-adjusted" in real["sentence"]
    assert real["test"] == "paired_seeds_t"  # matched seeds: the paired t
    # GRPO n=4 and PPO n=1 share their true accuracy; one draw says nothing of calibration (test_calibration
    # does), so check only that its verdict follows its Holm-adjusted p
    null = pairs[("GRPO n=4", "PPO n=1")]
    assert null["significant"] == str(float(null["p_holm"]) < 0.05)
    assert null["verdict"].startswith("not distinguishable") == (float(null["p_holm"]) >= 0.05)
    md = (out / "report.md").read_text()
    assert md.index("## Table 1: mean over seeds") < md.index("## Which differences are real") < \
        md.index("## Training curves") < md.index("## Runs")
    assert "TBRM n=1 is ahead of GRPO n=4" in md
    assert "curves_vs_step.png" in res.figures
    for f in out.rglob("*"):
        if f.suffix in (".md", ".html", ".csv"):
            assert not leaks(f.read_text(), tmp_path), f


def test_primaries_get_one_verdict_each_and_the_rest_is_exploratory(tmp_path):
    """10 seeds per method: TBRM n=1 truly 15 points above PPO n=1 ('different'), TBRM n=4 and GRPO n=4 the same
    method in all but name ('equivalent within ±5 points'); Holm over these two only, everything else exploratory."""
    from reports.build import build_report

    rng = np.random.default_rng(11)
    q = rng.uniform(0.2, 0.8, 500)
    runs = []
    for method, n, shift in (("tbrm", 1, 0.15), ("ppo", 1, 0.0), ("tbrm", 4, 0.05), ("grpo", 4, 0.05)):
        mats = simulate(rng, 10, 500, shift=shift, seed_sd=0.02, difficulty=q)
        for s in range(10):
            runs.append(write_eval_run(tmp_path / "evals" / f"{method}{n}-seed{s}", method, n, s, mats[s]))
    out = tmp_path / "report"
    build_report([str(r) for r in runs], out, primaries=["TBRM n=1:PPO n=1", "tbrm n=4:grpo n=4"], margin=5)
    with open(out / "tables" / "primary.csv", newline="") as f:
        reader = csv.DictReader(f)
        prim = {(r["a"], r["b"]): r for r in reader}
    assert reader.fieldnames == PRIMARY_COLUMNS
    big, same = prim[("TBRM n=1", "PPO n=1")], prim[("TBRM n=4", "GRPO n=4")]
    assert big["verdict"] == "different" and same["verdict"] == "equivalent within ±5 points"
    assert (big["seeds_a"], big["seeds_b"]) == ("10", "10") and float(big["ci_low"]) > 0.0
    assert big["test"] == same["test"] == "paired_seeds_t"  # seed k of both methods: the same prompt stream
    # one Holm family over the 4 claims (each primary's difference and its equivalence)
    claims = [float(r[k]) for r in prim.values() for k in ("p", "p_tost")]
    assert [float(r[k]) for r in prim.values() for k in ("p_holm", "p_tost_holm")] == pytest.approx(
        holm(claims), rel=1e-9)
    assert 0.0 < float(big["mde"]) < float(big["diff"])  # 10 seeds at seed SD 2 points see 15 points easily
    pairs = {(p["method_a"], p["method_b"]): p for p in _csv(out / "tables" / "paired_seeds.csv")}
    assert pairs[("TBRM n=1", "PPO n=1")]["family"] == "primary"
    assert pairs[("TBRM n=1", "TBRM n=4")]["family"] == "exploratory"
    assert pairs[("TBRM n=1", "TBRM n=4")]["verdict"] == "exploratory"
    md = (out / "report.md").read_text()
    assert md.index("## Primary comparisons (heldout)") < md.index("## Table 1: mean over seeds")
    assert "TBRM n=1 beats PPO n=1: different" in md and "Smoke run" not in md
    assert "TBRM n=4 and GRPO n=4 are equivalent within ±5 points" in md


def test_a_group_sequential_report_stops_at_the_first_look_that_decides_and_lists_a_dropped_primary(tmp_path):
    """10 matched seeds per method, a true gap of 30 points: the look at 5 seeds already decides 'different' at its
    O'Brien-Fleming boundary (p about 1e-5 against 2e-4), so the design stops there and seeds 5-9 do not enter the verdict; a declared primary
    that was not run stays in the family and is listed."""
    from reports.build import build_report

    rng = np.random.default_rng(13)
    q = rng.uniform(0.2, 0.6, 1000)
    runs = []
    for method, shift in (("tbrm", 0.3), ("ppo", 0.0)):
        mats = simulate(rng, 10, 1000, shift=shift, seed_sd=0.01, difficulty=q)
        for s in range(10):
            runs.append(write_eval_run(tmp_path / "evals" / f"{method}1-seed{s}", method, 1, s, mats[s]))
    out = tmp_path / "report"
    build_report([str(r) for r in runs], out, primaries=["TBRM n=1:PPO n=1"], dropped=["TBRM n=4:GRPO n=4"],
                 sequential=[5, 10])
    (prim,) = _csv(out / "tables" / "primary.csv")
    looks = _csv(out / "tables" / "sequential.csv")
    assert prim["verdict"] == "different" and prim["seeds_a"] == "5" and prim["test"] == "paired_seeds_t"
    assert [r["look"] for r in looks] == ["1"] and float(looks[0]["p"]) < float(looks[0]["nominal"])
    md = (out / "report.md").read_text()
    assert "## Group-sequential looks" in md and "Stopped at look 1 (5 seeds per method)" in md
    assert "Seeds beyond it do not enter the verdict" in md
    assert "Declared but not run (kept in the family at p = 1): TBRM n=4 vs GRPO n=4" in md
    # the same runs without the plan: a fixed 10-seed design, Holm over the 4 claims of 2 declared primaries
    build_report([str(r) for r in runs], tmp_path / "fixed", primaries=["TBRM n=1:PPO n=1"],
                 dropped=["TBRM n=4:GRPO n=4"])
    (fixed,) = _csv(tmp_path / "fixed" / "tables" / "primary.csv")
    assert fixed["seeds_a"] == "10" and float(fixed["p_holm"]) == pytest.approx(min(1.0, 4 * float(fixed["p"])))


def test_mde_matches_statsmodels_power_for_equal_designs():
    """reports.stats.mde over Welch's design with equal SDs and seeds equals the pooled t-test's MDE that
    statsmodels' TTestIndPower solves for; seeds_needed is the first n whose power reaches 80%."""
    from statsmodels.stats.power import TTestIndPower

    from reports.seeds import welch_design
    from reports.stats import mde, power_t, seeds_needed

    sd = 0.08
    for n, alpha in ((3, 0.05), (10, 0.025), (15, 0.05)):
        se, df = welch_design(sd, sd)(n)
        d = TTestIndPower().solve_power(nobs1=n, ratio=1.0, alpha=alpha, power=0.8)
        assert mde(se, df, alpha) == pytest.approx(d * sd, rel=1e-4)
    need = seeds_needed(0.10, welch_design(sd, sd), 0.05)
    design = welch_design(sd, sd)
    assert power_t(0.10, *design(need), 0.05) >= 0.8 > power_t(0.10, *design(need - 1), 0.05)
    assert 10 <= need <= 15  # issue 19: 12-15 seeds per method for 10 points at seed SD 8
    assert seeds_needed(0.0, welch_design(sd, sd)) is None


def test_the_powered_preset_plans_its_looks_and_stops_on_the_reports_verdicts(tmp_path):
    """The group-sequential preset: one plan per look (its seeds 0..n-1), the report stage told the plan and the
    declared primaries not run; a look is final when the report's primaries are all decided; a plan whose last
    block is not the seed count is an error, and --seeds N off the plan is a fixed design."""
    from tbrm.cli import build_parser

    from reports.reproduce.plan import resolve_settings
    from reports.reproduce.sequential import decided, look_stages

    out = tmp_path / "p"
    args = ["reproduce", "--preset", "powered", "--out", str(out), "--recipes", "cpu-tbrm-n1", "cpu-ppo-n1",
            "--set", "blocks=[2,3]", "--set", "seeds=3"]
    s = resolve_settings(build_parser().parse_args(args))
    looks = look_stages(s, out)
    assert [n for n, _ in looks] == [2, 3]
    for n, stages in looks:
        trains = [st for st in stages if st.argv and st.argv[0] == "train"]
        assert sorted({t.argv[-1] for t in trains}) == [f"seed={k}" for k in range(n)]
        report = stages[-1].argv
        assert report[report.index("--sequential") + 1] == "2,3"
        assert report[report.index("--dropped-primary") + 1] == "TBRM n=4:GRPO n=4"
    rep = out / "report-powered" / "tables"
    assert not decided(rep.parent)
    rep.mkdir(parents=True)
    (rep / "primary.csv").write_text("a,b,verdict\nTBRM n=1,PPO n=1,inconclusive\n")
    assert not decided(rep.parent)
    (rep / "primary.csv").write_text("a,b,verdict\nTBRM n=1,PPO n=1,equivalent within ±5 points\n")
    assert decided(rep.parent)
    with pytest.raises(ValueError, match="last planned block"):
        resolve_settings(build_parser().parse_args(args[:-2] + ["--set", "seeds=4"]))
    with pytest.raises(ValueError, match="increasing"):
        resolve_settings(build_parser().parse_args(args[:-4] + ["--set", "blocks=[3,2]", "--set", "seeds=2"]))
    fixed = resolve_settings(build_parser().parse_args(args + ["--seeds", "2"]))
    assert fixed["blocks"] is None and fixed["seeds"] == 2
