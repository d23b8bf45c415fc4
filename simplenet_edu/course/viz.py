"""The course's figures: the one module the notebooks import (``from simplenet_edu.course import viz``).

Here: the look of every figure (:func:`course_style`) and the figures of results (a test set's
examples, score histograms with thresholds, ROC, precision-recall and PRO curves, AUROC per defect
type, training histories and validation checkpoints). The figures of images and of the method's
stages are written in :mod:`.stage_figures` and re-exported here, so every figure is ``viz.plot_...``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from .stage_figures import (heatmap_overlay, plot_distributions, plot_feature_maps, plot_heatmaps, plot_images,
                            plot_patch_grid, plot_patch_pca, plot_pca_clouds, plot_plane, plot_receptive_fields,
                            plot_shell, plot_truncated_l1)

__all__ = [
    # results (here)
    "course_style", "plot_examples", "save_examples_figure", "plot_score_histograms", "plot_roc", "plot_pr",
    "plot_pro_curve", "plot_per_defect", "plot_training_history", "plot_checkpoints", "map_on_image",
    # images and stages (stage_figures)
    "heatmap_overlay", "plot_images", "plot_heatmaps", "plot_feature_maps", "plot_patch_grid",
    "plot_receptive_fields", "plot_patch_pca", "plot_pca_clouds", "plot_distributions", "plot_truncated_l1",
    "plot_plane", "plot_shell",
]


def course_style() -> None:
    """The look of every course figure: seaborn's white grid, readable font sizes."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def plot_examples(result, n: int = 6, vmin: float | None = None, vmax: float | None = None):
    """A figure with a row per test image: the image, its heat map, and its ground-truth mask.

    Picks anomalous and normal images alternately so both kinds are shown. Returns the figure.
    """
    import matplotlib.pyplot as plt

    # Anomalous images one defect type after another, so every type shows up in a small figure.
    by_type: dict[str, list[int]] = {}
    for i, label in enumerate(result.labels):
        if label == 1:
            by_type.setdefault(result.defect_types[i], []).append(i)
    anomalous = [i for group in itertools.zip_longest(*by_type.values()) for i in group if i is not None]
    normal = [i for i, label in enumerate(result.labels) if label == 0]
    order = [i for pair in zip(anomalous, normal) for i in pair] + anomalous[len(normal):] + normal[len(anomalous):]
    chosen = order[:n]
    vmin = float(result.anomaly_maps.min()) if vmin is None else vmin
    vmax = float(result.anomaly_maps.max()) if vmax is None else vmax
    columns = 3 if result.masks is not None else 2
    fig, axes = plt.subplots(len(chosen), columns, figsize=(2.6 * columns, 2.6 * len(chosen)), squeeze=False)
    for row, index in zip(axes, chosen):
        row[0].imshow(result.images[index])
        row[0].set_title(f"{result.defect_types[index]}  score {result.image_scores[index]:.2f}", fontsize=8)
        row[1].imshow(heatmap_overlay(result.images[index], result.anomaly_maps[index], vmin=vmin, vmax=vmax))
        row[1].set_title("heat map", fontsize=8)
        if columns == 3:
            row[2].imshow(result.masks[index], cmap="gray", vmin=0, vmax=1)
            row[2].set_title("ground truth", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return fig


def map_on_image(amap, image, model) -> np.ndarray:
    """A map of the model's input back onto the photograph it came from, pixel for pixel.

    ``amap [H, W]``: one map of ``model.predict`` (the model's input, the image resized to
    ``model.resize_shape`` and centre-cropped to ``model.image_shape``); ``image``: the original,
    ``[H0, W0, 3]`` (or ``[H0, W0]``), or its ``(H0, W0)``; ``model``: anything with those two shapes
    (a trained model, an ``OnnxModel``). Returns ``[H0, W0]`` float32, NaN on the margin the crop cut
    away (not scored; ``imshow`` leaves NaN transparent), so that
    ``ax.imshow(photo); ax.imshow(map_on_image(maps[0], photo, model), cmap="jet", alpha=0.5)``
    lays the map on the photograph. ``predict`` draws its heat maps the same way
    (:func:`simplenet_edu.deploy.heatmaps.map_to_image`).
    """
    from ..deploy.heatmaps import map_to_image

    amap = amap.detach().cpu().numpy() if hasattr(amap, "detach") else np.asarray(amap)
    shape = tuple(image) if isinstance(image, tuple) else np.shape(image)[:2]
    return map_to_image(amap, shape, model.resize_shape, model.image_shape)


def save_examples_figure(result, path: str | Path, n: int = 6) -> Path:
    """Write :func:`plot_examples` to ``path`` (PNG), atomically."""
    import matplotlib.pyplot as plt

    from ..utils.atomic import atomic_path

    fig = plot_examples(result, n=n)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


# ----------------------------------------------------------------------------- thresholds (the threshold explorer)

_THRESHOLD_STYLES = [("tab:green", "--"), ("tab:purple", ":"), ("tab:brown", "-.")]


def plot_score_histograms(scores, labels, thresholds: dict | None = None, bins=30, ax=None) -> dict:
    """Overlaid histograms of normal and anomalous image scores, with a vertical line per threshold.

    Args:
        scores: ``[N]`` image scores; labels: ``[N]`` in {0, 1} (1 = anomalous).
        thresholds: ``{name: value}`` to draw (``None`` values are skipped), e.g.
            ``{"from normal images": result.threshold_normal, "F1-max": t}``.
        bins: a number of bins, or the ``[B + 1]`` bin edges.
        ax: the axes to draw on (default: a new figure).

    Returns:
        ``{"ax", "normal", "anomalous", "edges", "lines"}``: the axes, the two ``StepPatch`` artists
        (update with ``.set_data(counts)``), the edges, and ``{name: Line2D}``; the threshold explorer
        moves these instead of drawing again.
    """
    import matplotlib.pyplot as plt

    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    edges = np.histogram_bin_edges(scores, bins=bins)
    normal = ax.stairs(np.histogram(scores[~labels], bins=edges)[0], edges, fill=True, alpha=0.45,
                       color="tab:blue", label=f"normal ({int((~labels).sum())})")
    anomalous = ax.stairs(np.histogram(scores[labels], bins=edges)[0], edges, fill=True, alpha=0.45,
                          color="tab:orange", label=f"anomalous ({int(labels.sum())})")
    lines = {}
    for (name, value), (colour, style) in zip((thresholds or {}).items(), _THRESHOLD_STYLES * 4):
        if value is not None:
            lines[name] = ax.axvline(value, color=colour, linestyle=style, linewidth=1.5, label=name)
    ax.set_xlabel("image score (higher = more anomalous)")
    ax.set_ylabel("test images")
    ax.legend(fontsize=8)
    return {"ax": ax, "normal": normal, "anomalous": anomalous, "edges": edges, "lines": lines}


# ----------------------------------------------------------------------------- curves and runs


def plot_roc(labels, scores, ax=None, name: str = "model"):
    """The ROC curve (``labels [N]`` in {0, 1}, ``scores [N]``) with its AUROC and the chance diagonal."""
    import matplotlib.pyplot as plt

    from ..evaluation import metrics

    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4))
    fpr, tpr, _ = metrics.roc_points(labels, scores)
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{name}: AUROC {metrics.image_auroc(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance: AUROC 0.5")
    ax.set(xlabel="false positive rate (normal flagged)", ylabel="true positive rate (defects caught)",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_pr(labels, scores, ax=None):
    """The precision-recall curve, its best-F1 point, and the precision of guessing (the anomaly share)."""
    import matplotlib.pyplot as plt

    from ..evaluation import metrics

    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4))
    precision, recall, _ = metrics.pr_points(labels, scores)
    best_f1, best_threshold = metrics.f1_max(labels, scores)
    at_best = metrics.confusion_at(labels, scores, best_threshold)
    ax.plot(recall, precision, drawstyle="steps-post", label="model")
    ax.scatter([at_best["recall"]], [at_best["precision"]], color="tab:red", zorder=3, label=f"F1-max {best_f1:.2f}")
    ax.axhline(float(np.mean(np.asarray(labels))), color="grey", linestyle=":", label="guessing")
    ax.set(xlabel="recall (defects caught)", ylabel="precision (flags that are right)",
           xlim=(-0.02, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower left")
    return ax


def plot_pro_curve(masks, maps, fpr_limit: float = 0.3, ax=None):
    """The per-region-overlap curve, with the area that AUPRO measures (FPR up to ``fpr_limit``) shaded.

    masks, maps: ``[N, H, W]``. Returns the axes.
    """
    import matplotlib.pyplot as plt

    from ..evaluation import metrics

    fpr, pro = metrics.pro_curve(masks, maps)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.plot(fpr, pro, marker="." if len(fpr) <= 50 else None,  # dots only where they can be told apart
            label=f"PRO curve (AUPRO {metrics.aupro(masks, maps, fpr_limit):.3f})")
    inside = fpr <= fpr_limit
    x = np.append(fpr[inside], fpr_limit)
    y = np.append(pro[inside], np.interp(fpr_limit, fpr, pro))
    ax.fill_between(x, y, step=None, alpha=0.25, label=f"area up to FPR {fpr_limit}")
    ax.axvline(fpr_limit, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate (normal pixels flagged)", ylabel="mean overlap per region",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_per_defect(per_defect: dict, ax=None, title: str = "image AUROC per defect type"):
    """One bar per ``{defect type: AUROC}``, against the chance line at 0.5."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.0))
    names, values = list(per_defect), [per_defect[name] for name in per_defect]
    sns.barplot(x=names, y=values, hue=names, palette="crest", legend=False, ax=ax)
    for index, value in enumerate(values):
        ax.text(index, value + 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set(ylim=(0, 1.08), ylabel="image AUROC", title=title)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_training_history(history: list[dict], margin: float | None = 0.5):
    """Three panels from ``SimpleNet.history``: the loss; the mean scores D(normal) and D(noised)
    (against the margins of the truncated L1 loss; ``margin=None`` for the BCE loss, whose boundary
    is 0); the share of features already past their margin (BCE: on the right side of 0). Returns the
    figure."""
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    axes[0].plot(steps, [h["loss"] for h in history], marker=".")
    axes[0].set(xlabel="optimiser step", ylabel="truncated L1 loss" if margin is not None else "BCE loss",
                title="loss")
    axes[1].plot(steps, [h["d_normal"] for h in history], marker=".", label="mean D(normal)")
    axes[1].plot(steps, [h["d_fake"] for h in history], marker=".", label="mean D(noised)")
    for level, colour in [(margin, "tab:blue"), (-margin, "tab:orange")] if margin is not None else [(0.0, "grey")]:
        axes[1].axhline(level, color=colour, linestyle=":", linewidth=1)
    axes[1].set(xlabel="optimiser step", ylabel="score",
                title="scores (dotted: the margins)" if margin is not None else "scores (dotted: 0)")
    axes[1].legend(fontsize=8)
    axes[2].plot(steps, [h["p_normal"] for h in history], marker=".",
                 label="normal with D >= m" if margin is not None else "normal with D > 0")
    axes[2].plot(steps, [h["p_fake"] for h in history], marker=".",
                 label="noised with D <= -m" if margin is not None else "noised with D < 0")
    axes[2].set(xlabel="optimiser step", ylabel="share of features", ylim=(-0.02, 1.02),
                title="past the margin" if margin is not None else "on the right side")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_checkpoints(history: list[dict], test_steps=None, test_values=None, test_name: str = "test AUPRO",
                     selected_step: int | None = None, step_losses=None):
    """Two panels: the training loss (``step_losses``: one value per optimiser step, drawn thin, with
    the rows of ``history`` as dots: each the mean since the row before); and at the validation
    checkpoints (rows with ``val_score``) the validation AUPRO and score, with ``test_values`` at
    ``test_steps`` beside them (for teaching: nothing may be chosen on it). ``selected_step`` marks the
    kept checkpoint. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.3))
    if step_losses is not None:
        axes[0].plot(np.arange(1, len(step_losses) + 1), step_losses, linewidth=0.6, alpha=0.6, label="each step")
    axes[0].plot([h["step"] for h in history], [h["loss"] for h in history], marker=".", linestyle="none"
                 if step_losses is not None else "-", label="history rows (means)")
    axes[0].set(xlabel="optimiser step", ylabel="training loss", title="loss")
    axes[0].legend(fontsize=8)
    checks = [h for h in history if "val_score" in h]
    steps = [h["step"] for h in checks]
    axes[1].plot(steps, [h["val_aupro"] for h in checks], marker="o", label="validation AUPRO (painted normal images)")
    axes[1].plot(steps, [h["val_score"] for h in checks], marker="o", linestyle="--",
                 label="validation score (mean of AUROC and AUPRO)")
    if test_values is not None:
        axes[1].plot(test_steps, test_values, marker="s", color="tab:red", label=f"{test_name} (never used to choose)")
    if selected_step is not None:
        axes[1].axvline(selected_step, color="grey", linestyle=":", label=f"kept: step {selected_step}")
    axes[1].set(xlabel="optimiser step", ylabel="score", title="at the checkpoints")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig
