"""`tbrm reproduce`: the paper's Table 1 runs as commands (`--preset paper`), or a CPU-scale version of the
comparison that actually runs (`--preset cpu`, `cpu-full`, ...).

CPU presets: train TBRM n=1, TBRM n=4, GRPO n=4 and PPO n=1 from `tbrm/recipes/cpu-*.yaml` with an equal prompt
budget (same prompts per step and steps), evaluate the base model and every final checkpoint on the held-out
arithmetic split and a MATH500 slice, then write the report. Every stage is a subprocess
(`python -m tbrm.cli ...`); train and eval resume in place, and a stage whose outputs are complete (final
checkpoint / summary.json with the same settings) is skipped, so rerunning the same command after a crash or a
kill picks up where it stopped. Stage timings are written to DIR/stages.json.

Modules: `presets` (the settings of each CPU preset: a new preset is one entry there), `plan` (settings and the
stages of a preset), `executors` (running the stages, in order or side by side), `paper` (the paper's script),
`cli` (the subcommand).
"""

from reports.reproduce.cli import add_parser, run
from reports.reproduce.executors import run_stages
from reports.reproduce.paper import paper_commands, paper_verl_commands, write_paper
from reports.reproduce.plan import (Stage, _eval_done, _offline_config, cpu_stages, resolve_settings,
                                    stage_dependencies, train_overrides)
from reports.reproduce.presets import PRESETS

__all__ = ["PRESETS", "Stage", "add_parser", "cpu_stages", "paper_commands", "paper_verl_commands",
           "resolve_settings", "run", "run_stages", "stage_dependencies", "train_overrides", "write_paper",
           "_eval_done", "_offline_config"]
