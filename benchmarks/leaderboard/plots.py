"""The leaderboard's plot: one PNG per dataset."""

from __future__ import annotations

import os

from matplotlib.figure import Figure

from benchmarks.leaderboard.stats import MEAN, METRICS, setting_order
from rgpkd_jax import files


def plot_name(dataset: str, setting: str) -> str:
    return f"leaderboard_{dataset}.png" if setting == "per_category" else f"leaderboard_{dataset}_{setting}.png"


def write_plots(rows: list[dict], summaries: list[dict], output_dir: str) -> list[str]:
    """One PNG per dataset and setting: a panel per metric, methods side by side per category (error
    bar = std), primary published numbers of that setting as black ticks. Returns the file names written."""
    written = []
    for dataset, setting in sorted({(r["dataset"], r["setting"]) for r in rows}, key=setting_order):
        records = [r for r in rows if (r["dataset"], r["setting"]) == (dataset, setting)]
        records += [dict(s, category=s["scope"]) for s in summaries
                    if (s["dataset"], s["setting"], s["scope"]) == (dataset, setting, MEAN)]
        groups = list(dict.fromkeys(r["category"] for r in records))
        labels = sorted({r["method_label"] for r in records})
        metrics = [(m, t) for m, t in METRICS if any(m in r["metrics"] for r in records)]
        figure = Figure(figsize=(max(6.0, 0.9 * len(groups) * max(1, len(labels)) / 2 + 2), 2.6 * len(metrics)))
        axes = figure.subplots(len(metrics), 1, squeeze=False)
        width = 0.8 / len(labels)
        for ax, (metric, title) in zip(axes[:, 0], metrics):
            for j, label in enumerate(labels):
                xs, ys, errs, pubs = [], [], [], []
                for i, group in enumerate(groups):
                    cell = next((r["metrics"].get(metric) for r in records
                                 if r["category"] == group and r["method_label"] == label), None)
                    if cell is None:
                        continue
                    x = i - 0.4 + width * (j + 0.5)
                    xs.append(x)
                    ys.append(100 * cell["mean"])
                    errs.append(100 * (cell["std"] or 0.0))
                    if cell["published_percent"] is not None:
                        pubs.append((x, cell["published_percent"]))
                ax.bar(xs, ys, width, yerr=errs, label=label, capsize=2)
                if pubs:
                    ax.scatter(*zip(*pubs), marker="_", s=120, color="black", zorder=3,
                               label="published" if j == 0 else None)
            ax.set_title(f"{dataset} ({setting}): {title}", fontsize=9)
            ax.set_ylabel("%")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels(groups, rotation=45, ha="right", fontsize=7)
            lows = [100 * r["metrics"][metric]["mean"] for r in records if metric in r["metrics"]]
            ax.set_ylim(max(0.0, min(lows) - 5), 100.5)
        handles, names = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, names, loc="upper right", fontsize=7)
        figure.tight_layout()
        name = plot_name(dataset, setting)
        with files.atomic_write(os.path.join(output_dir, name), "wb") as f:
            figure.savefig(f, dpi=100, format="png")
        written.append(name)
    return written
