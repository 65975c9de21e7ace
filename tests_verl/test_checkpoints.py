"""verl's checkpoints -> HF folders `tbrm eval` scores. The checkpoint is written by verl's own FSDPCheckpointManager
from an FSDP2-sharded model (one CPU rank over gloo) after an optimiser step, exactly the files a verl run saves."""

from __future__ import annotations

import json

import torch

from tests_verl.conftest import run_cli


def _train_and_save(model_dir: str, actor_dir, step: int) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verl.trainer.config import CheckpointConfig
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    mesh = init_device_mesh("cpu", (1,), mesh_dim_names=("fsdp",))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()  # the saved weights differ from the base model's
    manager = FSDPCheckpointManager(model, opt, None, AutoTokenizer.from_pretrained(model_dir),
                                    checkpoint_config=CheckpointConfig(save_contents=["model", "optimizer", "extra"]))
    manager.save_checkpoint(str(actor_dir), global_step=step)
    return {k: v.full_tensor().detach().clone() for k, v in model.state_dict().items()}


def test_verl_checkpoint_exports_to_a_folder_tbrm_eval_scores(dist, tiny_chat_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from tbrm_verl.cli import main as tbrm_verl_main

    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"problem": "What is 1+1?", "answer": "2"}) + "\n")
    (tmp_path / "math500").mkdir()
    (tmp_path / "math500" / "test.jsonl").write_text(
        json.dumps({"problem": "What is 2+2?", "answer": "4", "unique_id": "a"}) + "\n")
    run = tmp_path / "run"
    assert tbrm_verl_main(["paper-tbrm-n1-qwen1.5b", "data=file", f"data_path={train}", "problem_field=problem",
                           "answer_field=answer", "eval_problems=1", "--out", str(run),
                           "--data-dir", str(tmp_path), "--stand-in-model", tiny_chat_model_dir]) == 0
    trained = _train_and_save(tiny_chat_model_dir, run / "checkpoints" / "global_step_2" / "actor", step=2)

    capsys.readouterr()
    assert tbrm_verl_main(["export", str(run)]) == 0  # `tbrm verl export RUN`, in this process
    assert "checkpoint-2: exported" in capsys.readouterr().out
    hf = run / "checkpoint-2"
    exported = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_chat_model_dir, dtype=torch.float32).state_dict()
    moved = 0
    for name, w in trained.items():
        # verl's merger stores bf16: the export is the trained weight rounded to bf16
        torch.testing.assert_close(exported[name], w.to(torch.bfloat16).float(), rtol=0, atol=0, msg=name)
        moved += not torch.equal(exported[name], base[name].to(torch.bfloat16).float())
    assert moved > 0, "the export must hold the trained weights, not the base model's"
    assert (hf / "tokenizer_config.json").is_file()
    assert not list(run.glob(".checkpoint-*"))  # no temporary folder left behind

    assert tbrm_verl_main(["export", str(run)]) == 0
    assert "already exported" in capsys.readouterr().out  # resumable: finished work is kept
    assert tbrm_verl_main(["export", str(run), "--step", "7"]) == 2
    assert "no global_step_7" in capsys.readouterr().err

    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i}+1?", "answer": str(i + 1)}) + "\n" for i in range(3)))
    out = tmp_path / "eval"
    run_cli("eval", "--model", str(hf), "--data-file", str(data), "--max-new-tokens", "8", "--device", "cpu",
            "--temperature", "0", "--samples", "1", "--no-progress", "--out", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["problems"]["n_problems"] == 3
    assert sum(summary["benchmarks"]["problems"]["outcomes"].values()) == 3
    assert summary["trained_with"]["engine"] == "verl" and summary["trained_with"]["algorithm"] == "tbrm"
    assert summary["trained_with"]["beta"] == 0.002 and summary["trained_with"]["steps"] == 760

    report = tmp_path / "report"
    run_cli("report", str(out), "--out", str(report))
    text = (report / "report.md").read_text()
    assert "TBRM n=1" in text  # the method label comes from the exported checkpoint's train_config.json
