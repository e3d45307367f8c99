"""Figures of an evaluation: an image / ground truth / heat-map sheet, and the image ROC, pixel
precision-recall and PRO curves."""

from __future__ import annotations

import os

import numpy as np

from rgpkd_jax import files
from rgpkd_jax.deploy.images import overlay
from rgpkd_jax.metrics.summary import METRIC_LABELS

SHEET_FILE = "examples.png"
CURVES_FILE = "curves.png"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def pick_examples(labels: np.ndarray, scores: np.ndarray, per_kind: int) -> list[int]:
    """The highest-scoring good images and a spread of defective ones (deterministic)."""
    good = np.flatnonzero(labels == 0)
    bad = np.flatnonzero(labels == 1)
    good = good[np.argsort(-scores[good], kind="stable")][:per_kind]
    bad = bad[np.linspace(0, len(bad) - 1, min(per_kind, len(bad))).round().astype(int)] if len(bad) else bad
    return [int(i) for i in np.concatenate([good, bad])]


def example_figure(predictions: dict, per_kind: int, *, threshold: float | None = None,
                   random_teacher: bool = False, sizes: dict[int, tuple[int, int]] | None = None):
    """Image / ground truth / heat map rows for `pick_examples`' images, titled by file name, defect
    type and score, each drawn in the aspect of its original file (``sizes``: index -> (height,
    width); square without). The heat maps share one colour scale (the shown maps' range, widened
    to include the threshold) so that good and defective images compare; its colour bar marks and
    labels ``threshold`` (the predict decision threshold, when known). A random teacher is stamped
    on the figure: its numbers are not results."""
    plt = _pyplot()
    from matplotlib import cm, colors
    idx = pick_examples(predictions["label"], predictions["score"], per_kind)
    maps = predictions["map"][idx]
    known = [] if threshold is None else [threshold]
    vmin, vmax = min([float(np.min(maps)), *known]), max([float(np.max(maps)), *known])
    fig, axes = plt.subplots(len(idx), 3, figsize=(8.5, 2.6 * len(idx)), squeeze=False, layout="constrained")
    for row, i in enumerate(idx):
        image = predictions["image"][i]
        score = float(predictions["score"][i])
        decision = "" if threshold is None else ("  > thr: defective" if score > threshold else "  <= thr: good")
        title = (f"{predictions['file_name'][i]}\n{predictions['defect_type'][i]}  score {score:.4g}"
                 f"{decision}")
        height, width = (sizes or {}).get(i, image.shape[:2])
        for col, (panel, name) in enumerate((
                (image, title), (predictions["mask"][i], "ground truth"),
                (overlay(image, maps[row], vmin, vmax), "anomaly map"))):
            ax = axes[row, col]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=1 if panel.ndim == 2 else None,
                      extent=(0, width, height, 0))  # the square model input shown in its file's aspect
            ax.set_title(name, fontsize=7)
            ax.axis("off")
    bar = fig.colorbar(cm.ScalarMappable(colors.Normalize(vmin, vmax), cmap="jet"), ax=axes[:, 2],
                       fraction=0.08, label="anomaly map value")
    if threshold is not None:
        bar.ax.axhline(threshold, color="black", linewidth=2)
        bar.ax.annotate(f"thr {threshold:.4g}", xy=(0, threshold), xycoords=("axes fraction", "data"),
                        xytext=(-3, 0), textcoords="offset points", ha="right", va="center", fontsize=7)
    headings = ["RANDOM TEACHER: not a result"] if random_teacher else []
    if threshold is None:
        headings.append("no decision threshold (threshold.json absent)")
    if headings:
        fig.suptitle("\n".join(headings), color="red" if random_teacher else "black", fontsize=10)
    return fig


def example_sheet(predictions: dict, path: str, per_kind: int, *, threshold: float | None = None,
                  random_teacher: bool = False, sizes: dict[int, tuple[int, int]] | None = None) -> None:
    _save(example_figure(predictions, per_kind, threshold=threshold, random_teacher=random_teacher,
                         sizes=sizes), path)


def curves_figure(curves: dict, metrics: dict, path: str, fpr_limit: float) -> None:
    """Image ROC, pixel precision-recall and PRO curves (`summary.metric_curves`; the last two only
    with ground-truth masks: ``metrics`` has the pixel metrics), labelled with the exact values of
    ``metrics``."""
    plt = _pyplot()
    has_masks = "pixel_auroc" in metrics
    fig, axes = plt.subplots(1, 3 if has_masks else 1, figsize=(15 if has_masks else 5, 4.5), squeeze=False)
    ax_roc = axes[0, 0]
    ax_roc.plot(curves["image_roc/fpr"], curves["image_roc/tpr"],
                label=f"{METRIC_LABELS['image_auroc']} {metrics['image_auroc']:.4f}")
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="image-level ROC")
    ax_roc.legend(loc="lower right")
    if has_masks:
        ax_pr, ax_pro = axes[0, 1], axes[0, 2]
        # AP sums precision times each rise in recall: steps continued to the left of each point.
        ax_pr.plot(curves["pixel_pr/recall"], curves["pixel_pr/precision"], drawstyle="steps-pre",
                   label=f"{METRIC_LABELS['pixel_ap']} {metrics['pixel_ap']:.4f}, "
                         f"{METRIC_LABELS['pixel_f1_max']} {metrics['pixel_f1_max']:.4f}")
        ax_pr.set(xlabel="recall (defective pixels)", ylabel="precision", title="pixel-level precision-recall",
                  xlim=(0, 1), ylim=(0, 1.02))
        ax_pr.legend(loc="upper right")
        ax_pro.plot(curves["pro/fpr"], curves["pro/pro"],
                    label=f"{METRIC_LABELS['aupro']} {metrics['aupro']:.4f}")
        ax_pro.set(xlabel="false positive rate (pixels)", ylabel="per-region overlap",
                   title=f"PRO curve up to FPR {fpr_limit:g}", xlim=(0, fpr_limit), ylim=(0, 1.02))
        ax_pro.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str) -> None:
    with files.atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    _pyplot().close(fig)


def write_figures(predictions: dict, metrics: dict, curves: dict, config, workdir: str, *,
                  threshold: float | None = None, random_teacher: bool = False,
                  sizes: dict[int, tuple[int, int]] | None = None) -> list[str]:
    paths = [os.path.join(workdir, SHEET_FILE), os.path.join(workdir, CURVES_FILE)]
    example_sheet(predictions, paths[0], config.eval.num_visualise, threshold=threshold,
                  random_teacher=random_teacher, sizes=sizes)
    curves_figure(curves, metrics, paths[1], config.eval.fpr_limit)
    return paths
