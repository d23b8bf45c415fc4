"""Small plotting helpers shared by the command line and the notebooks (matplotlib + seaborn)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np


def _normalise(amap: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    vmin = float(amap.min()) if vmin is None else vmin
    vmax = float(amap.max()) if vmax is None else vmax
    return np.clip((amap - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)


def heatmap_overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.5,
                    vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Blend a jet-coloured anomaly map over an image.

    Args:
        image: ``[H, W, 3]`` float in [0, 1] or uint8.
        amap: ``[H, W]`` anomaly map; scaled to [vmin, vmax] (default: its own range).

    Returns:
        ``[H, W, 3]`` uint8.
    """
    from matplotlib import colormaps

    image = np.asarray(image, dtype=np.float32)
    if image.max() > 1.0:
        image = image / 255.0
    colour = colormaps["jet"](_normalise(amap, vmin, vmax))[..., :3]
    return (255 * ((1 - alpha) * image + alpha * colour)).round().clip(0, 255).astype(np.uint8)


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


# ----------------------------------------------------------------------------- the course (notebooks 00-05)


def course_style() -> None:
    """The look of every course figure: seaborn's white grid, readable font sizes."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def _display_image(image) -> np.ndarray:
    """One image as ``[H, W, 3]`` float in [0, 1], from ``[3, H, W]`` (a tensor) or ``[H, W, 3]`` uint8."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    image = image.astype(np.float32)
    return image / 255.0 if image.max() > 1.0 else image


def _draw_contour(ax, mask, colour: str = "red") -> None:
    mask = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask, dtype=float)
    if mask.max() > 0:
        ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.2)


def _image_grid(n: int, ncols: int, size: float):
    """A figure of ``ceil(n / ncols)`` rows of blank panels; returns it and its first ``n`` axes."""
    import matplotlib.pyplot as plt

    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def plot_images(images, masks=None, titles=None, ncols: int = 6, size: float = 2.0):
    """A grid of images, each with its ground-truth defect outlined in red.

    Args:
        images: ``N`` images, ``[N, 3, H, W]`` in [0, 1] or ``[N, H, W, 3]`` uint8.
        masks: ``[N, H, W]`` of 0/1, or ``None``; titles: ``N`` strings, or ``None``.

    Returns the figure.
    """

    fig, axes = _image_grid(len(images), ncols, size)
    for index, ax in enumerate(axes):
        ax.imshow(_display_image(images[index]))
        if masks is not None:
            _draw_contour(ax, masks[index])
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    fig.tight_layout()
    return fig


def plot_heatmaps(images, maps, masks=None, titles=None, vmin: float | None = None, vmax: float | None = None,
                  ncols: int = 4, size: float = 2.6):
    """Anomaly maps blended over their images, with the ground truth outlined in white.

    Args:
        images: ``N`` images (``[N, 3, H, W]`` in [0, 1] or ``[N, H, W, 3]`` uint8); maps: ``[N, H, W]``;
        masks: ``[N, H, W]`` of 0/1 or ``None``. All maps share one colour scale, [vmin, vmax]
        (default: the range of all of them), so colours compare across images.

    Returns the figure.
    """

    maps = np.asarray(maps)
    vmin = float(maps.min()) if vmin is None else vmin
    vmax = float(maps.max()) if vmax is None else vmax
    fig, axes = _image_grid(len(maps), ncols, size)
    for index, ax in enumerate(axes):
        ax.imshow(heatmap_overlay(_display_image(images[index]), maps[index], vmin=vmin, vmax=vmax))
        if masks is not None:
            _draw_contour(ax, masks[index], colour="white")
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    fig.tight_layout()
    return fig


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


def plot_feature_maps(image, feature_maps, names=None, n_channels: int = 4, size: float = 1.9):
    """The image, then per layer the ``n_channels`` channels that vary most over it.

    Args:
        image: ``[3, H, W]`` in [0, 1]; feature_maps: one ``[1, C_l, h_l, w_l]`` (or ``[C_l, h_l, w_l]``)
        map per layer, as the backbone returns them; names: a label per layer.

    Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(feature_maps), n_channels + 1, figsize=(size * (n_channels + 1), size * len(feature_maps)),
                             squeeze=False)
    for row, fmap in enumerate(feature_maps):
        fmap = fmap.detach().cpu().float()
        fmap = fmap[0] if fmap.ndim == 4 else fmap
        busiest = fmap.flatten(1).std(dim=1).argsort(descending=True)[:n_channels]
        axes[row, 0].imshow(_display_image(image))
        label = names[row] if names is not None else f"layer {row}"
        axes[row, 0].set_title(f"{label}\n{fmap.shape[0]} x {fmap.shape[1]} x {fmap.shape[2]}", fontsize=8)
        for col, channel in enumerate(busiest.tolist(), start=1):
            axes[row, col].imshow(fmap[channel], cmap="viridis")
            axes[row, col].set_title(f"channel {channel}", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_patch_grid(image, stride: int, cell: tuple[int, int], patch_size: int = 3, ax=None):
    """The image cut into its ``stride`` x ``stride`` feature cells, one cell and its
    ``patch_size`` x ``patch_size`` neighbourhood (what local aggregation pools) highlighted."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    picture = _display_image(image)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.imshow(picture)
    height, width = picture.shape[:2]
    for edge in range(0, max(height, width) + 1, stride):
        ax.axhline(edge - 0.5, color="white", linewidth=0.4, alpha=0.6)
        ax.axvline(edge - 0.5, color="white", linewidth=0.4, alpha=0.6)
    row, col = cell
    half = patch_size // 2
    ax.add_patch(Rectangle(((col - half) * stride - 0.5, (row - half) * stride - 0.5), patch_size * stride,
                           patch_size * stride, fill=False, edgecolor="yellow", linewidth=2,
                           label=f"{patch_size}x{patch_size} neighbourhood"))
    ax.add_patch(Rectangle((col * stride - 0.5, row * stride - 0.5), stride, stride, color="red", alpha=0.7,
                           label="one patch"))
    ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))
    ax.axis("off")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_receptive_fields(image, fields, cells, strides, names=None, size: float = 3.0):
    """One panel per layer: the input pixels that move one feature cell (from
    :func:`simplenet_edu.course.settings.receptive_field`), over the image, with the cell's own stride box.

    Args:
        image: ``[3, H, W]``; fields: one ``[H, W]`` map per layer; cells: ``(row, col)`` per layer;
        strides: the stride of each layer; names: a label per layer.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(fields), figsize=(size * len(fields), size), squeeze=False)
    for index, (ax, field, (row, col), stride) in enumerate(zip(axes[0], fields, cells, strides)):
        field = np.asarray(field.detach().cpu() if hasattr(field, "detach") else field, dtype=float)
        rows, cols = np.nonzero(field)
        ax.imshow(_display_image(image))
        ax.imshow(np.sqrt(field / field.max()), cmap="magma", alpha=0.65)  # sqrt shows the faint tails
        ax.add_patch(Rectangle((col * stride - 0.5, row * stride - 0.5), stride, stride, fill=False,
                               edgecolor="cyan", linewidth=1.5))
        label = names[index] if names is not None else f"layer {index}"
        ax.set_title(f"{label} (stride {stride})\nnon-zero over {np.ptp(rows) + 1} x {np.ptp(cols) + 1} px", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_patch_pca(features, is_defect, ax=None, max_points: int = 4000, seed: int = 0):
    """Patch features projected on their first two principal components, normal in blue, defective in red.

    Args:
        features: ``[M, D]``; is_defect: ``[M]`` bool. At most ``max_points`` normal patches are drawn
        (chosen with ``seed``); every defective one is. The PCA is fitted on all of them.

    Returns the axes.
    """
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    features = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float32)
    is_defect = np.asarray(is_defect.detach().cpu() if hasattr(is_defect, "detach") else is_defect, dtype=bool)
    pca = PCA(n_components=2, svd_solver="full").fit(features)
    points = pca.transform(features)
    normal = np.flatnonzero(~is_defect)
    normal = np.random.default_rng(seed).permutation(normal)[:max_points]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.4, 3.8))
    ax.scatter(*points[normal].T, s=4, alpha=0.35, color="tab:blue", label=f"normal patches ({len(normal)} shown)")
    ax.scatter(*points[is_defect].T, s=10, alpha=0.8, color="tab:red", label=f"defect patches ({int(is_defect.sum())})")
    share = pca.explained_variance_ratio_
    ax.set(xlabel=f"PC 1 ({share[0]:.0%} of the variance)", ylabel=f"PC 2 ({share[1]:.0%})")
    ax.legend(fontsize=8, markerscale=2)
    return ax


def plot_distributions(values: dict, xlabel: str, ax=None, bins: int = 60, normal_std: float | None = None):
    """Overlaid density histograms, one per ``{name: values}`` entry (any shape, flattened).

    ``normal_std`` also draws the density of ``N(0, normal_std^2)``, for comparing with a target.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.2))
    flat = {name: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=float).ravel()
            for name, v in values.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(flat.values())), bins=bins)
    for name, v in flat.items():
        sns.histplot(v, bins=edges, stat="density", element="step", alpha=0.3, ax=ax, label=name)
    if normal_std is not None:
        x = np.linspace(edges[0], edges[-1], 400)
        ax.plot(x, np.exp(-0.5 * (x / normal_std) ** 2) / (normal_std * np.sqrt(2 * np.pi)), color="black",
                linestyle="--", linewidth=1, label=f"N(0, {normal_std:.3g}^2)")
    ax.set(xlabel=xlabel, ylabel="density")
    ax.legend(fontsize=8)
    return ax


def plot_truncated_l1(margin: float = 0.5, ax=None, span: float = 2.0):
    """Each sample's share of the truncated L1 loss as a function of its score ``D``: a normal
    feature pays ``max(0, m - D)``, a noised one ``max(0, m + D)``. Computed with the library's loss."""
    import matplotlib.pyplot as plt
    import torch

    from ..simplenet.loss import truncated_l1_loss

    scores = torch.linspace(-span, span, 401)
    ignored = torch.tensor([-1e9])  # a noised feature scored -1e9 costs nothing: isolates one term
    as_normal = [truncated_l1_loss(d.view(1), ignored, margin).item() for d in scores]
    as_noised = [truncated_l1_loss(-ignored, d.view(1), margin).item() for d in scores]
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.2))
    ax.plot(scores, as_normal, color="tab:blue", label="normal feature: max(0, m - D)")
    ax.plot(scores, as_noised, color="tab:orange", label="noised feature: max(0, m + D)")
    for x in (-margin, margin):
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="discriminator score D (high = normal)", ylabel="loss of one sample")
    ax.set_title(f"truncated L1, margin m = {margin}", fontsize=9)
    ax.legend(fontsize=8)
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


def plot_plane(discriminator, normal, fake, ax=None, extent=(-2.0, 2.0, -1.0, 2.0), resolution: int = 150,
               title: str | None = None):
    """A 2-D discriminator's view of the plane: its score ``D`` as colour (blue normal, red anomalous),
    the boundary ``D = 0`` in black, normal points in blue and noised ones in orange.

    ``discriminator``: ``[M, 2] -> [M]``; ``normal``, ``fake``: ``[N, 2]``; ``extent``: (x0, x1, y0, y1).
    Returns ``(ax, inside)``: the axes and the share of the drawn area where ``D > 0`` (how loose the
    boundary is)."""
    import matplotlib.pyplot as plt
    import torch

    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.0))
    x0, x1, y0, y1 = extent
    xs, ys = torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    was_training = discriminator.training
    discriminator.eval()
    with torch.no_grad():
        score = discriminator(torch.stack([gx.flatten(), gy.flatten()], 1)).view(resolution, resolution)
    discriminator.train(was_training)
    limit = float(score.abs().max())
    ax.contourf(xs, ys, score, levels=np.linspace(-limit, limit, 21), cmap="RdBu", alpha=0.55)
    ax.contour(xs, ys, score, levels=[0.0], colors="black", linewidths=1.2)
    ax.scatter(*np.asarray(fake).T, s=2, color="tab:orange", alpha=0.6, label="noised")
    ax.scatter(*np.asarray(normal).T, s=2, color="tab:blue", alpha=0.6, label="normal")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xticks=[], yticks=[])
    inside = float((score > 0).float().mean())
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax, inside


def plot_pca_clouds(clouds: dict, fit_on: str, ax=None, max_points: int = 3000, seed: int = 0):
    """Point clouds of ``[M, D]`` features ``{name: features}`` projected on the first two principal
    components of ``clouds[fit_on]``. At most ``max_points`` of each are drawn (chosen with ``seed``).
    Returns ``(ax, pca)``; ``pca.transform`` projects more features the same way."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    def as_array(values):
        return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float32)

    pca = PCA(n_components=2, svd_solver="full").fit(as_array(clouds[fit_on]))
    rng = np.random.default_rng(seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    for name, values in clouds.items():
        values = as_array(values)
        shown = values[rng.permutation(len(values))[:max_points]]
        ax.scatter(*pca.transform(shown).T, s=4 if len(values) > 500 else 10, alpha=0.4, label=f"{name} ({len(values)})")
    share = pca.explained_variance_ratio_
    ax.set(xlabel=f"PC 1 of {fit_on} ({share[0]:.0%} of its variance)", ylabel=f"PC 2 ({share[1]:.0%})")
    ax.legend(fontsize=8, markerscale=2)
    return ax, pca


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
