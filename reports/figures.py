"""Report figures (matplotlib, no pyplot state): Table 1 as bars with CIs, training curves of every train run on
shared axes against step / wall-clock / rollouts consumed, and time per step by phase."""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.figure import Figure

from reports.runs import TrainRun
from reports.tables import ModelRow, bench_names, shown_metric

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")

X_LABELS = {"step": "training step", "time": "training wall-clock (minutes, excl. held-out eval)",
            "rollouts": "rollouts consumed"}


def color_map(labels: list[str]) -> dict[str, str]:
    return {lab: COLORS[i % len(COLORS)] for i, lab in enumerate(dict.fromkeys(labels))}


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def table1_figure(rows: list[ModelRow], metric: str, colors: dict[str, str]) -> Figure | None:
    names = bench_names(rows)
    if not rows or not names:
        return None
    fig = Figure(figsize=(max(6.0, 1.2 + 1.1 * len(names) * max(1, len(rows)) ** 0.5), 3.8))
    ax = fig.add_subplot()
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs, ys, lo, hi = [], [], [], []
        for j, b in enumerate(names):
            if b not in r.benchmarks:
                continue
            _, m = shown_metric(r.benchmarks[b], metric)
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(100 * m["value"])
            lo.append(max(0.0, 100 * (m["value"] - m["ci_low"])))
            hi.append(max(0.0, 100 * (m["ci_high"] - m["value"])))
        ax.bar(xs, ys, width=width * 0.95, color=colors[r.label], label=r.label, yerr=[lo, hi], capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
    ax.set_xticks(range(len(names)), [f"{b}\n({r})" for b, r in zip(names, _metric_names(rows, names, metric))])
    ax.set_ylabel("score (%)")
    top = max([100 * shown_metric(r.benchmarks[b], metric)[1]["ci_high"] for r in rows for b in names
               if b in r.benchmarks])
    ax.set_ylim(0, max(5.0, 1.15 * top))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Benchmark scores with CIs over problems (Wilson for avg@1)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _metric_names(rows, names, metric) -> list[str]:
    out = []
    for b in names:
        ms = {r.benchmarks[b].metric(metric)[0] for r in rows if b in r.benchmarks}
        out.append(next(iter(ms)) if len(ms) == 1 else "mixed")
    return out


def curve_panels(trains: list[TrainRun]) -> list[tuple[str, str]]:
    """(metrics.jsonl key, title) of every panel that at least one run has data for."""
    panels = [("reward/mean", "reward (mean over rollouts)")]
    for name in dict.fromkeys(n for t in trains for n in t.eval_names):
        panels.append((f"eval/{name}/accuracy", f"held-out accuracy: {name}"))
    panels += [("response/length_mean", "response length (tokens)"),
               ("kl/seq_log_ratio_mean", "KL to reference (seq. log-ratio)"), ("loss", "loss (symlog)"),
               ("tbrm/residual_abs_mean", "TBRM |Bellman residual| (mean)")]
    return [p for p in panels if any(r.get(p[0]) is not None for t in trains for r in t.rows)]


def x_values(t: TrainRun, axis: str) -> dict[int, float]:
    """step -> x for every logged row (step 0 is the initial evaluation: 0 on every axis)."""
    out, clock = {}, 0.0
    for r in t.rows:
        if axis == "step":
            out[r["step"]] = float(r["step"])
        elif axis == "rollouts":
            out[r["step"]] = float(r.get("rollouts") or 0)
        else:
            clock += float(r.get("time/step") or 0.0)
            out[r["step"]] = clock / 60.0
    return out


def _mean_band(runs: list[TrainRun], key: str, axis: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """x (mean over seeds), mean, min and max of `key` at every step that every run logged it."""
    per = []
    for t in runs:
        xs = x_values(t, axis)
        per.append({r["step"]: (xs[r["step"]], r[key]) for r in t.rows if r.get(key) is not None})
    steps = sorted(set.intersection(*(set(p) for p in per))) if per else []
    xs = [sum(p[s][0] for p in per) / len(per) for s in steps]
    ys = [[p[s][1] for p in per] for s in steps]
    return xs, [sum(y) / len(y) for y in ys], [min(y) for y in ys], [max(y) for y in ys]


def curves_figure(trains: list[TrainRun], axis: str, colors: dict[str, str],
                  groups: list[tuple[str, list[TrainRun]]] | None = None) -> Figure | None:
    """One panel per metric, one line per run; with `groups` (runs that differ only in the seed), one line per
    method: the mean over its seeds with a band from the lowest to the highest seed."""
    panels = curve_panels(trains)
    if not trains or not panels:
        return None
    groups = groups or [(t.label, [t]) for t in trains]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.4 * ncols, 3.2 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (key, title) in zip(axes, panels):
        for label, runs in groups:
            xs, mean, lo, hi = _mean_band(runs, key, axis)
            if not xs:
                continue
            scale = 100.0 if key.startswith("eval/") else 1.0
            color = colors.get(label) or colors.get(runs[0].label, "#333333")
            name = label if len(runs) == 1 else f"{label} (mean of {len(runs)} seeds)"
            ax.plot(xs, [scale * y for y in mean], marker="o", markersize=3, linewidth=1.5, color=color, label=name)
            if len(runs) > 1:
                ax.fill_between(xs, [scale * y for y in lo], [scale * y for y in hi], color=color, alpha=0.18,
                                linewidth=0)
        if key == "loss":
            ax.set_yscale("symlog", linthresh=1e-2)
        if key.startswith("eval/"):
            ax.set_ylabel("%")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(X_LABELS[axis], fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 4), fontsize=9)
    return fig


def efficiency_figure(records: list[dict], colors: dict[str, str]) -> Figure | None:
    recs = [r for r in records if r.get("step_s") is not None]
    if not recs:
        return None
    fig = Figure(figsize=(9, 0.6 + 0.55 * len(recs) + 1.2), layout="constrained")
    ax_t, ax_m = fig.subplots(1, 2, width_ratios=[2, 1])
    ys = range(len(recs))
    left = [0.0] * len(recs)
    for key, name, col in (("generation_s", "generation", "#4c72b0"), ("reference_s", "reference", "#dd8452"),
                           ("training_s", "training", "#55a868")):
        vals = [r.get(key) or 0.0 for r in recs]
        ax_t.barh(ys, vals, left=left, color=col, label=name)
        left = [a + b for a, b in zip(left, vals)]
    ax_t.set_yticks(list(ys), [r["label"] for r in recs])
    ax_t.invert_yaxis()
    ax_t.set_xlabel("seconds per step")
    ax_t.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=3)
    ax_t.set_title("time per step by phase", fontsize=10)
    ax_m.barh(ys, [r.get("peak_memory_gb") or 0.0 for r in recs], color=[colors.get(r["label"], "#777") for r in recs])
    ax_m.set_yticks(list(ys), [""] * len(recs))
    ax_m.invert_yaxis()
    ax_m.set_xlabel("GB")
    ax_m.set_title("peak memory", fontsize=10)
    for ax in (ax_t, ax_m):
        ax.grid(axis="x", alpha=0.3)
    return fig


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically (temp file in the same folder + rename), with the mode a plain open() gives."""
    from evals.io import atomic_write_bytes

    atomic_write_bytes(path, data)
