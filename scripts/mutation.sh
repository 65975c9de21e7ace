#!/usr/bin/env bash
# Mutation testing of the statistics core with mutmut 3 (docs/statistics.md, "Mutation testing"), one module at a
# time, each in a scratch copy of the tracked tree under .mutation/ (git-ignored) so that a rerun resumes where the
# last one stopped instead of testing every mutant again.
#   bash scripts/mutation.sh                      # the four modules
#   bash scripts/mutation.sh reports/stats.py     # one
# Writes benchmarks/results/mutation/<module>.json: mutmut's counts, the kill rate over the mutants a selected test
# reaches, and each surviving mutant's name and diff. Needs the test environment (README: the test command).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python -m pip install -q -c constraints.txt "mutmut==3.8.1"
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(reports/stats.py reports/seeds.py reports/primaries.py evals/metrics.py)
# The tests that exercise each module; the simulation grids marked slow are left out (minutes per mutant), the fast
# calibration checks stay in.
declare -A tests=(
  [evals/metrics.py]="tests/test_metrics.py"
  [reports/stats.py]="tests/test_stats.py tests/test_calibration.py"
  [reports/seeds.py]="tests/test_seeds.py tests/test_calibration.py"
  [reports/primaries.py]="tests/test_seeds.py tests/test_stats.py"
)
for module in "${modules[@]}"; do
  [ -n "${tests[$module]:-}" ] || { echo "scripts/mutation.sh: no test selection for $module" >&2; exit 2; }
  slug=${module//\//_}
  scratch=$repo/.mutation/${slug%.py}
  mkdir -p "$scratch"
  git ls-files -z | xargs -0 cp --parents -f -t "$scratch"
  top=${module%%/*}
  {
    echo "[mutmut]"
    echo "source_paths=$top/"
    echo "only_mutate=$module"
    echo "also_copy="
    for d in evals reports tbrm baselines tbrm_verl; do [ "$d" = "$top" ] || echo "    $d/"; done
    echo "pytest_add_cli_args_test_selection="
    for t in ${tests[$module]}; do echo "    $t"; done
    printf 'pytest_add_cli_args=\n    -q\n    -x\n    -p\n    no:cacheprovider\n    -m\n    not slow\n'
  } >"$scratch/setup.cfg"
  echo "== $module: mutmut run in $scratch (tests: ${tests[$module]})"
  (cd "$scratch" && mutmut run --max-children "$(nproc)" >mutmut-run.log 2>&1 || true; mutmut export-cicd-stats)
  python - "$scratch" "$module" "$repo/benchmarks/results/mutation/$slug.json" <<'PY'
import json
import subprocess
import sys
from pathlib import Path

scratch, module, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
stats = json.loads((scratch / "mutants" / "mutmut-cicd-stats.json").read_text())
meta = json.loads((scratch / "mutants" / (module + ".meta")).read_text())
codes = meta["exit_code_by_key"]
show = lambda k: subprocess.run(["mutmut", "show", k], cwd=scratch, capture_output=True, text=True).stdout  # noqa: E731
reached = stats["killed"] + stats["survived"] + stats["timeout"]
doc = {"module": module, "tool": "mutmut 3.8.1", "counts": stats,
       "kill_rate_of_reached": round((stats["killed"] + stats["timeout"]) / reached, 4) if reached else None,
       # survived: a selected test ran the mutated code and still passed; not reached: no selected test runs it
       "survived": {k: show(k) for k in sorted(k for k, v in codes.items() if v == 0)},
       "not_reached": {k: show(k) for k in sorted(k for k, v in codes.items() if v in (5, 33))}}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(doc, indent=1) + "\n")
print(f"{module}: {stats}; killed {doc['kill_rate_of_reached']} of the reached mutants -> {out}")
PY
done
