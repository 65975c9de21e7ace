"""`tbrm reproduce --preset baselines` (issue 26): TBRM n=4 and TBRM-ReVal n=4 against every n=4 baseline, planned
with the powered preset's statistics and the two declared primaries. Planning only (the 3-seed run is hours of CPU);
tests/test_reproduce.py runs the pipeline itself end to end."""

from __future__ import annotations

from tbrm.cli import build_parser


def test_baselines_plan_trains_every_n4_method_per_seed_and_declares_its_primaries(tmp_path):
    from baselines.registry import method_label
    from reports.reproduce import PRESETS, cpu_stages, resolve_settings
    from tbrm.config import load_config, to_dict

    preset = PRESETS["baselines"]
    labels = {r: method_label(to_dict(load_config(r))) for r in preset["recipes"]}
    assert sorted(labels.values()) == sorted(["TBRM n=4", "TBRM-ReVal n=4", "GRPO n=4", "RLOO n=4", "REINFORCE++ n=4",
                                              "DAPO n=4", "GSPO n=4"])  # one method each, no two alike
    out = tmp_path / "b"
    s = resolve_settings(build_parser().parse_args(["reproduce", "--preset", "baselines", "--out", str(out)]))
    stages = cpu_stages(s, out)
    trains = [st for st in stages if st.argv and st.argv[0] == "train"]
    assert len(trains) == 3 * 7 and [t.argv[-1] for t in trains] == [f"seed={k}" for k in range(3) for _ in range(7)]
    budget = {(load_config(t.argv[2], t.argv[5:]).prompts_per_step, load_config(t.argv[2], t.argv[5:]).steps)
              for t in trains}
    assert budget == {(8, 20)}  # the same prompt budget for every method
    report = stages[-1].argv
    assert [report[i + 1] for i, x in enumerate(report) if x == "--primary"] == ["TBRM n=4:DAPO n=4",
                                                                                  "TBRM-ReVal n=4:TBRM n=4"]
    assert report[report.index("--margin") + 1] == "5"
    assert all("final_state=weights" in t.argv and "evaluate=false" in t.argv for t in trains)
