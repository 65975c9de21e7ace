"""Training curves a person would rather see than read: written to RUN_DIR/curves.png after training."""

from __future__ import annotations

from pathlib import Path

PANELS = [("reward/mean", "rollout reward"), ("eval/*/accuracy", "held-out accuracy"),
          ("kl/seq_log_ratio_mean", "sum log(pi/pi_ref) per response"), ("response/length_mean", "response tokens"),
          ("loss", "loss"), ("time/step", "seconds per step")]


def plot_training_curves(rows: list[dict], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (key, label) in zip(axes.flat, PANELS):
        if "*" in key:
            prefix, suffix = key.split("*")
            names = sorted({k for r in rows for k in r if k.startswith(prefix) and k.endswith(suffix)})
        else:
            names = [key]
        for name in names:
            pts = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 15 else None, ms=3,
                        label=name.split("/")[1] if "*" in key else None)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if "*" in key and names:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
