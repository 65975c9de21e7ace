"""`tbrm train` end to end on a tiny model: every algorithm, checkpoints that `tbrm eval` scores, resume after a
real SIGKILL, off-policy TBRM from a file, and start-up validation. The tiny model's head size is one vLLM's CPU
attention takes, so rollouts and evaluations run on vLLM (engine auto), as a user's do; a test that pins another
engine says why.

Trainings run in-process through `tbrm.api.train` (what `tbrm train` calls), so the test process pays the imports
once; a real `tbrm` process runs where the process is what is tested: the run a SIGKILL interrupts, the exit code and
one-line message of a refused start, and one plain `tbrm train` (the resume in
test_run_killed_before_its_first_checkpoint_resumes_and_reports)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tbrm import api
from tests.conftest import kill_env, run_cli, run_cli_here

pytestmark = pytest.mark.usefixtures("no_leaked_workers")

FAST = ["steps=2", "prompts_per_step=4", "max_new_tokens=6", "eval_problems=4", "eval_every=1", "save_every=1",
        "micro_batch_size=3", "arith_digits=[1,2]", "heldout_size=20", "temperature=1.0", "generation_batch_size=8"]
VOLATILE = ("time/", "memory/", "rollout/tokens_per_second")


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _stable(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith(VOLATILE)}


def _train(run: Path, model: str, *overrides: str) -> api.TrainResult:
    """`tbrm train --out RUN --no-progress model=MODEL OVERRIDES...`, in this process."""
    return api.train(out=run, overrides=[f"model={model}", *overrides], progress=False)


@pytest.fixture(scope="module")
def plain_run(tiny_model_path, tmp_path_factory) -> Path:
    """TBRM with the FAST settings (2 steps, a checkpoint and a held-out evaluation after each), trained once for
    the tests that only read it or resume a copy of it."""
    run = tmp_path_factory.mktemp("plain") / "run"
    _train(run, tiny_model_path, "algorithm=tbrm", *FAST)
    return run


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


@pytest.mark.parametrize("algo,extra,diagnostic", [
    ("tbrm", [], "tbrm/residual_mean"),
    ("tbrm", ["rollouts_per_prompt=2"], "tbrm/v_start_mean"),
    ("tbrm", ["subtract_ref_value=true"], "tbrm/v_ref_start_mean"),
    ("grpo", ["rollouts_per_prompt=2"], "grpo/clip_frac"),
    ("grpo", ["rollouts_per_prompt=2", "scale_adv_by_std=false", "loss_agg=seq-mean-token-sum-norm"], "grpo/kl"),
    ("ppo", ["policy_epochs=2"], "ppo/value_loss"),
])
def test_every_algorithm_trains_and_checkpoints(tiny_model_path, tmp_path, request, algo, extra, diagnostic):
    if algo == "tbrm" and not extra:
        run = request.getfixturevalue("plain_run")
    else:
        run = tmp_path / "run"
        _train(run, tiny_model_path, f"algorithm={algo}", *FAST, *extra)
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [0, 1, 2]
    n = 4 * (2 if "rollouts_per_prompt=2" in extra else 1)
    for r in rows[1:]:
        assert diagnostic in r and r["rollouts"] == n * r["step"]
        for key in ("reward/mean", "loss", "kl/seq_log_ratio_mean", "response/length_mean", "response/truncation_rate",
                    "time/generation", "time/reference", "time/training", "memory/peak_gb", "eval/heldout/accuracy"):
            assert key in r, key
        assert r["optim/grad_norm"] >= 0
    assert (run / "tensorboard").is_dir() and any((run / "tensorboard").iterdir())
    assert (run / "curves.png").stat().st_size > 10_000  # the plotted curves
    ckpt = run / "checkpoint-2"
    # what `tbrm eval --model CKPT ...` runs, with the default engine: vLLM (the fixture's head size is one it takes)
    api.evaluate(model=str(ckpt), benchmarks=["math500"], limit=2, max_new_tokens=4, out=tmp_path / "eval",
                 progress=False, print_table=False)
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert evaluated["benchmarks"]["math500"]["n_problems"] == 2 and evaluated["engine"]["name"] == "vllm"
    # a model folder: the weights are its only top-level safetensors (vLLM loads every one as weights), the resume
    # state sits in trainer_state/
    assert [p.name for p in ckpt.glob("*.safetensors")] == ["model.safetensors"]
    assert (ckpt / "trainer_state" / "trainer_state.safetensors").exists()
    assert not list(ckpt.rglob("*.pt")) and not list(ckpt.rglob("*.bin"))  # nothing a resume would unpickle
    before = load_file(str(Path(tiny_model_path) / "model.safetensors"))
    after = load_file(str(ckpt / "model.safetensors"))
    moved = any(not (before[k] == after[k]).all() for k in before)
    if algo == "grpo" and all(r["grpo/groups_with_signal"] == 0 for r in rows[1:]):
        # a random tiny model solves nothing: every group has equal rewards, so advantages are 0, the ratio is 1
        # and the KL gradient at pi = pi_ref is 0; GRPO must then leave the weights exactly where they were
        assert not moved
    elif "subtract_ref_value=true" in extra and all(r["reward/mean"] == 0 for r in rows[1:]):
        # ReVal's fix: with zero reward the reference is a fixed point (residual and gradient exactly 0 here)
        assert not moved and all(r["tbrm/residual_abs_mean"] == 0 for r in rows[1:])
    else:
        assert moved


def test_resume_after_kill_equals_uninterrupted_run(tiny_model_path, tmp_path, plain_run):
    """`tbrm train` SIGKILLed as step 2 begins (step 1 logged and checkpointed), then resumed: the same metrics and
    bit-identical final weights as the uninterrupted run of the same settings (`plain_run`)."""
    killed = tmp_path / "killed"
    args = ["train", "--no-progress", f"model={tiny_model_path}", "algorithm=tbrm", *FAST]
    proc = run_cli(*args, "--out", str(killed), env=kill_env(step=1), check=False)
    assert proc.returncode == -9
    assert [r["step"] for r in _metrics(killed)] == [0, 1] and not (killed / "checkpoint-2").exists()
    _train(killed, tiny_model_path, "algorithm=tbrm", *FAST)
    a, b = _metrics(killed), _metrics(plain_run)
    assert [r["step"] for r in a] == [0, 1, 2]
    assert [_stable(r) for r in a] == [_stable(r) for r in b]
    wa = load_file(str(killed / "checkpoint-2" / "model.safetensors"))
    wb = load_file(str(plain_run / "checkpoint-2" / "model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)


def test_a_checkpoint_of_an_earlier_version_evaluates_and_resumes_as_it_is(tiny_model_path, tmp_path, plain_run):
    """Earlier versions wrote the resume state beside the weights, where vLLM reads it as weights ("There is no
    module or parameter named 't0'"). Such a run folder, untouched by hand, is scored by `tbrm eval` with the
    default engine (vLLM), and trains on from that checkpoint, also where a move of its state was cut short."""
    run = _copy(plain_run, tmp_path / "run")
    ckpt = run / "checkpoint-2"
    for f in (ckpt / "trainer_state").iterdir():
        f.rename(ckpt / f.name)
    (ckpt / "trainer_state").rmdir()
    run_cli("eval", "--model", str(ckpt), "--benchmarks", "math500", "--limit", "2", "--max-new-tokens", "4",
            "--no-progress", "--out", str(tmp_path / "eval"))
    config = json.loads((tmp_path / "eval" / "config.json").read_text())
    assert config["engine"]["name"] == "vllm"
    assert [p.name for p in ckpt.glob("*.safetensors")] == ["model.safetensors"]  # moved on the way
    (ckpt / "trainer_state" / "trainer_state.json").rename(ckpt / "trainer_state.json")  # a move cut short
    _train(run, tiny_model_path, "algorithm=tbrm", *FAST, "steps=3")
    assert _logged_steps(run) == [0, 1, 2, 3]
    assert [p.name for p in (run / "checkpoint-3").glob("*.safetensors")] == ["model.safetensors"]
    assert not list(ckpt.glob("trainer_state.*"))


def test_resume_with_changed_settings_is_refused(tiny_model_path, tmp_path, plain_run):
    run = _copy(plain_run, tmp_path / "run")
    proc = run_cli("train", "--out", str(run), "--no-progress", f"model={tiny_model_path}", *FAST, "steps=3",
                   "lr=1e-3", check=False)
    assert proc.returncode == 2 and "lr" in proc.stderr and "new run directory" in proc.stderr
    assert _logged_steps(run) == [0, 1, 2]  # refused before it trained


def test_config_fields_added_after_a_run_resume_at_their_default():
    """A run saved before a TrainConfig field existed used that field's default: resuming it with the default is
    no change; with another value it is."""
    from tbrm.config import load_config, to_dict
    from tbrm.trainer import config_changes

    saved = to_dict(load_config("cpu-tbrm-n1"))
    del saved["whiten_advantages"]  # as in a train_config.json written before the field was added
    assert config_changes(saved, load_config("cpu-tbrm-n1", ["steps=99"])) == {}
    assert config_changes(saved, load_config("cpu-tbrm-n1", ["whiten_advantages=false"])) == {
        "whiten_advantages": (True, False)}


def test_off_policy_tbrm_learns_from_a_trajectory_file(tiny_model_path, tmp_path):
    traj = tmp_path / "traj.jsonl"
    rows = [{"prompt": f"What is {a} + {a}?", "response": f"{a} + {a} = {2 * a}", "reward": float(a % 2)}
            for a in range(1, 5)]
    traj.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    _train(run, tiny_model_path, f"offline_trajectories={traj}", *FAST, "steps=6", "lr=3e-3", "beta=0.5",
           "eval_every=0", "save_every=0", "grad_clip=10")
    m = [r for r in _metrics(run) if r["step"] > 0]
    assert [r["reward/mean"] for r in m] == [0.5] * 6  # rewards come from the file, not from a verifier
    assert all(r["time/generation"] < 0.05 for r in m)  # nothing is sampled
    assert m[-1]["loss"] < 0.5 * m[0]["loss"]  # the residuals of the fixed data shrink


def test_zero_reward_moves_plain_tbrm_off_the_reference_but_not_the_ref_value_variant(tiny_model_path, tmp_path):
    """ReVal's Prop. 1 in the real loop: from a file of unrewarded trajectories, plain TBRM's residual at the start
    is V_ref(s_1) != 0 and its gradient pushes the policy away; with subtract_ref_value the residual and its gradient
    at the reference are 0 (up to float noise)."""
    traj = tmp_path / "zero.jsonl"
    traj.write_text("".join(json.dumps({"prompt": f"What is {a} + 1?", "response": f"{a + 1}", "reward": 0.0}) + "\n"
                            for a in range(4)))
    common = [f"offline_trajectories={traj}", *FAST, "steps=2", "evaluate=false", "save_every=2", "lr=1e-3",
              "tensorboard=false"]
    seen = {}
    for name, extra in (("plain", []), ("vref", ["subtract_ref_value=true"])):
        run = tmp_path / name
        _train(run, tiny_model_path, *common, *extra)
        m = [r for r in _metrics(run) if r["step"] > 0]
        seen[name] = [(r["loss"], r["tbrm/residual_mean"], r["kl/seq_log_ratio_mean"], r["optim/grad_norm"]) for r in m]
        if name == "plain":
            assert abs(m[0]["tbrm/residual_mean"]) > 0.1 and m[0]["loss"] > 0.01
        else:
            assert m[0]["tbrm/residual_abs_mean"] < 1e-4 and m[0]["tbrm/v_ref_start_mean"] == pytest.approx(
                m[0]["tbrm/v_start_mean"], abs=1e-4)
    (p1, p2), (v1, v2) = seen["plain"], seen["vref"]
    assert v1[3] < 1e-4 * p1[3]  # gradient at the reference: float noise for the variant, ~1e2 for plain TBRM
    # the variant stays near the reference (Adam still turns float-noise gradients into lr-sized steps, so not
    # exactly); plain TBRM's residual stays around V_ref(s_1) and it keeps pushing
    assert abs(v2[1]) < 0.1 * abs(p2[1]) and abs(v2[2]) < abs(p2[2])


def test_bad_trajectory_file_names_line_and_field(tiny_model_path, tmp_path):
    traj = tmp_path / "traj.jsonl"
    traj.write_text(json.dumps({"prompt": "1+1?", "response": "2", "reward": 1}) + "\n"
                    + json.dumps({"prompt": "2+2?", "response": "4", "reward": "yes"}) + "\n")
    proc = run_cli("train", "--out", str(tmp_path / "r"), f"model={tiny_model_path}", f"offline_trajectories={traj}",
                   check=False)
    assert proc.returncode == 2 and f"{traj}:2" in proc.stderr and "reward" in proc.stderr


@pytest.mark.parametrize("overrides,message", [
    (["algorithm=sarsa"], "unknown algorithm"),
    (["algorithm=grpo", "rollouts_per_prompt=1"], "rollouts_per_prompt must be >= 2"),
    (["algorithm=tbrm", "ref_model=none"], "TBRM needs a frozen reference"),
    (["algorithm=ppo", "ref_model=none", "kl_coef=0.001"], "needs a reference model"),
    (["learning_rate=1e-5"], "unknown config field 'learning_rate'"),
    (["algorithm=grpo", "rollouts_per_prompt=4", "offline_trajectories=x.jsonl"], "tbrm only"),
    (["algorithm=grpo", "rollouts_per_prompt=2", "subtract_ref_value=true"], "option of the TBRM loss"),
    (["engine_dtype=float16"], "engine_dtype must be auto, float32 or bfloat16"),
    (["autocast=fp16"], "autocast must be none, bf16 or auto"),
])
def test_bad_configs_fail_before_loading_a_model(tmp_path, overrides, message):
    proc = run_cli_here("train", "--out", str(tmp_path / "r"), "model=/nonexistent/model", *overrides, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Loading weights" not in proc.stderr and not (tmp_path / "r").exists()


def test_rollout_engine_samples_in_bf16_only_where_bf16_is_native():
    """engine_dtype=auto: a CPU without AVX512-BF16/AMX-BF16 emulates bf16 (vLLM several times slower than fp32), so
    bf16 autocast gives bf16 rollouts only where bf16 is native; explicit settings are kept."""
    from evals.models import BF16_CPU_FLAGS, cpu_flags
    from evals.engines.vllm_engine import rollout_dtype

    assert rollout_dtype("auto", "bf16", "float32", native=True) == "bfloat16"
    assert rollout_dtype("auto", "bf16", "float32", native=False) == "float32"
    assert rollout_dtype("auto", "none", "float32", native=True) == "float32"
    assert rollout_dtype("auto", "auto", "float32", native=True) == "bfloat16"  # autocast=auto is bf16 there
    assert rollout_dtype("auto", "auto", "float32", native=False) == "float32"
    assert rollout_dtype("auto", "none", "bfloat16", native=False) == "bfloat16"  # bf16 master weights: as they are
    assert rollout_dtype("bfloat16", "none", "float32", native=False) == "bfloat16"
    assert rollout_dtype("float32", "bf16", "float32", native=True) == "float32"
    with pytest.raises(ValueError, match="engine_dtype must be one of"):
        rollout_dtype("fp8", "bf16", "float32", native=True)
    zen3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: sysret_ss_attrs\n"
    zen5 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    sapphire = "flags\t\t: avx512f amx_tile amx_bf16 amx_int8\n"
    assert not cpu_flags(zen3) & BF16_CPU_FLAGS and "avx2" in cpu_flags(zen3)
    assert cpu_flags(zen5) & BF16_CPU_FLAGS == {"avx512_bf16"} and cpu_flags(sapphire) & BF16_CPU_FLAGS == {"amx_bf16"}
    assert cpu_flags("no flags here") == frozenset()


def test_recipes_all_load_and_validate():
    from tbrm.config import RECIPES_DIR, load_config

    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    assert {"paper-tbrm-n1-qwen1.5b", "paper-grpo-n4-qwen7b", "paper-ppo-n1-qwen7b", "cpu-tbrm-n1"} <= set(names)
    for name in names:
        cfg = load_config(name)
        if name.startswith("paper-"):
            assert cfg.prompts_per_step == 128 and cfg.max_new_tokens == 2048 and cfg.steps == 760
            assert cfg.temperature == 1.0
    assert load_config("paper-tbrm-n1-qwen7b").lr == 2e-6 and load_config("paper-tbrm-n1-qwen1.5b").lr == 2.5e-6
    ppo = load_config("paper-ppo-n1-qwen7b")
    assert (ppo.lr, ppo.critic_lr, ppo.kl_coef, ppo.entropy_coef, ppo.clip_eps) == (1e-6, 1e-5, 0.001, 0.001, 0.2)
    assert load_config("paper-tbrm-n4-qwen1.5b").beta == 0.002


def test_optimizer_is_fused_adamw_with_the_same_update_as_the_plain_one():
    import torch

    from tbrm.algorithm import adamw

    def trained(make):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, 8))
        opt = make([p])
        for i in range(5):
            g = torch.Generator().manual_seed(i)
            p.grad = torch.randn(64, 8, generator=g)
            opt.step()
        return opt, p.detach()

    fused, a = trained(lambda ps: adamw(ps, lr=1e-2, weight_decay=0.1))
    plain, b = trained(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=False, foreach=False))
    assert fused.defaults["fused"] is True  # the CPU default is a per-tensor Python loop, several times slower
    assert torch.allclose(a, b, atol=1e-6) and not torch.equal(a, torch.zeros_like(a))


def test_final_state_weights_keeps_the_final_weights_only_and_refuses_to_continue(tiny_model_path, tmp_path,
                                                                                   plain_run):
    run = tmp_path / "run"
    common = [*FAST, "save_every=1", "keep_checkpoints=1"]
    _train(run, tiny_model_path, *common, "steps=2", "final_state=weights")
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]  # the step-1 state was rotated away
    final = run / "checkpoint-2"
    from tbrm.state import STATE_TENSORS, load_trainer_state, state_dir

    assert load_trainer_state(final) == {"step": 2}  # no optimizer, scheduler or RNG state
    full = plain_run / "checkpoint-2"  # the same settings with final_state=full (the default)
    assert (state_dir(final) / STATE_TENSORS).stat().st_size * 100 < (state_dir(full) / STATE_TENSORS).stat().st_size
    wa, wb = load_file(str(final / "model.safetensors")), load_file(str(full / "model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)  # the same weights either way
    proc = run_cli("train", "--out", str(run), "--no-progress", f"model={tiny_model_path}", *common, "steps=3",
                   "final_state=weights", check=False)
    assert proc.returncode == 2 and "final weights only" in proc.stderr and "checkpoint-2" in proc.stderr


def _kill_when(run: Path, args: list[str], ready, timeout: float = 600) -> None:
    """Start `tbrm train` as a real process and SIGKILL it as soon as `ready(run)` holds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "tbrm.cli", *args, "--out", str(run)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout
    try:
        while not ready(run):
            if proc.poll() is not None:
                raise AssertionError(f"training ended ({proc.returncode}) before it could be killed: "
                                     f"{proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("training did not get far enough in time")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()


def _logged_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x)["step"] for x in path.read_text().splitlines() if x.endswith("}")]


def test_run_killed_before_its_first_checkpoint_resumes_and_reports(tiny_model_path, tmp_path):
    """kill -9 after the step-0 evaluation and a step, before any checkpoint: the rerun starts over, its
    metrics.jsonl holds each step once, and `tbrm report` builds from it."""
    run = tmp_path / "run"
    args = ["train", "--no-progress", f"model={tiny_model_path}", "algorithm=tbrm", *FAST, "save_every=0",
            "eval_every=0"]
    _kill_when(run, [*args, "steps=200"], lambda r: 1 in _logged_steps(r))
    assert not list(run.glob("checkpoint-*")) and _logged_steps(run)[:2] == [0, 1]
    proc = run_cli(*args, "steps=2", "--out", str(run))  # the plain `tbrm train` process of this file
    assert _logged_steps(run) == [0, 1, 2] and "trained tbrm for 2 steps" in proc.stdout
    paths = api.report(run, out=tmp_path / "report")  # what `tbrm report RUN --out ...` runs
    assert paths.markdown == tmp_path / "report" / "report.md" and paths.markdown.exists()


def test_resume_discards_evaluations_of_steps_after_the_checkpoint(tiny_model_path, tmp_path):
    """Killed after step 3's held-out evaluation with checkpoint-2 the last: the resumed run redoes step 3, so it
    must evaluate step 3's new weights, not read back the evaluation files the killed run left."""
    run = tmp_path / "run"
    args = ["train", "--no-progress", f"model={tiny_model_path}", "algorithm=tbrm", *FAST, "save_every=2"]
    _kill_when(run, [*args, "steps=200"], lambda r: 3 in _logged_steps(r))
    from tbrm.trainer import checkpoints

    assert [s for s, _ in checkpoints(run)] == [2]
    stale = run / "evals" / "step-3" / "heldout.jsonl"
    rows = [json.loads(x) for x in stale.read_text().splitlines()]
    stale.write_text("".join(json.dumps({**r, "response": "STALE", "outcome": "correct"}) + "\n" for r in rows))
    _train(run, tiny_model_path, "algorithm=tbrm", *FAST, "save_every=2", "steps=3")
    redone = [json.loads(x) for x in stale.read_text().splitlines()]
    assert len(redone) == len(rows) and not any(r["response"] == "STALE" for r in redone)
    assert _logged_steps(run) == [0, 1, 2, 3] and not (run / "evals" / "step-4").exists()


def test_resume_never_unpickles_trainer_state(tiny_model_path, tmp_path, plain_run):
    """A run folder from someone else must not run code when resumed: a checkpoint whose trainer state is a pickle
    that would create a file is refused with an error naming it, and the file never appears."""
    import torch

    run = _copy(plain_run, tmp_path / "run")
    ckpt = run / "checkpoint-2"  # the last one, which a resume would load
    shutil.rmtree(ckpt / "trainer_state")
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"optimizer": Payload()}, ckpt / "trainer_state.pt")
    proc = run_cli("train", "--no-progress", f"model={tiny_model_path}", *FAST, "evaluate=false", "steps=3", "--out",
                   str(run), check=False)
    assert not marker.exists()
    assert proc.returncode == 2 and str(ckpt / "trainer_state.pt") in proc.stderr, proc.stderr[-2000:]


def test_resume_refuses_a_sampler_that_would_change_the_rollouts(tiny_model_path, tmp_path):
    """The hf engine seeds each generation batch, so its samples depend on generation_batch_size: resuming with
    another size would sample other rollouts than the uninterrupted run. The same size resumes. (engine=hf, not
    the default vLLM, whose per-sequence seeds make samples independent of the batch: this is hf's own case.)"""
    run = tmp_path / "run"
    args = [*FAST, "evaluate=false", "engine=hf"]
    _train(run, tiny_model_path, *args)
    assert json.loads((run / "train_config.json").read_text())["engine_used"]["name"] == "hf"
    args.append("steps=3")
    proc = run_cli("train", "--no-progress", f"model={tiny_model_path}", *args, "generation_batch_size=4", "--out",
                   str(run), check=False)
    assert proc.returncode == 2 and "generation_batch_size" in proc.stderr and "hf" in proc.stderr, proc.stderr[-2000:]
    assert _logged_steps(run) == [1, 2]  # refused before it trained
    _train(run, tiny_model_path, *args)
    assert _logged_steps(run) == [1, 2, 3]
