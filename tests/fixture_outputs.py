"""The real SmolLM2 outputs of `fixtures/smollm2_outputs.jsonl`, with their gold answers.

The fixture keeps no benchmark data: rows of a real benchmark hold the response and the id of the problem it
answers (`<problem id>/<sample>`), and their gold is read from the benchmark files when they are here (the user's
$TBRM_DATA_DIR or ../shared/data). Rows on the held-out additions, which this suite generates itself, keep
their gold. No pytest import: benchmarks/grade_speed.py reads it too.
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_outputs.jsonl"


def smollm2_outputs(data_dir: Path | None) -> list[dict]:
    """Every fixture row with its gold; rows whose benchmark file is not in `data_dir` (or data_dir None) are left
    out."""
    from evals.benchmarks import load_benchmark, local_path

    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    golds: dict[str, str] = {}
    for name in sorted({r["benchmark"] for r in rows if "gold" not in r}):
        if data_dir is not None and local_path(name, data_dir).is_file():
            golds.update((p.id, p.answer) for p in load_benchmark(name, data_dir=data_dir, source="local"))
    out = []
    for r in rows:
        gold = r.get("gold", golds.get(r["id"].rsplit("/", 1)[0]))
        if gold is not None:
            out.append({**r, "gold": gold})
    return out
