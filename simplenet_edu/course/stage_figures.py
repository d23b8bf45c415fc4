"""The figures of images and of the method's stages, for the notebooks (matplotlib + seaborn).

Images with their defects and heat maps, backbone feature maps, the patch grid and receptive fields,
clouds of patch features, noise distributions, the truncated L1 loss, a 2-D discriminator's view
of the plane, and the discriminator's score against the distance from the normal features. The
notebooks reach them through :mod:`simplenet_edu.course.viz`, which re-exports them beside the
figures of results.
"""

from __future__ import annotations

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


def _array(values, dtype=float) -> np.ndarray:
    """A tensor (on any device) or an array-like as a NumPy array of ``dtype``."""
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=dtype)


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
    mask = _array(mask)
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
        field = _array(field)
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

    features, is_defect = _array(features, np.float32), _array(is_defect, bool)
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


def plot_pca_clouds(clouds: dict, fit_on: str, ax=None, max_points: int = 3000, seed: int = 0):
    """Point clouds of ``[M, D]`` features ``{name: features}`` projected on the first two principal
    components of ``clouds[fit_on]``. At most ``max_points`` of each are drawn (chosen with ``seed``).
    Returns ``(ax, pca)``; ``pca.transform`` projects more features the same way."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full").fit(_array(clouds[fit_on], np.float32))
    rng = np.random.default_rng(seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    for name, values in clouds.items():
        values = _array(values, np.float32)
        shown = values[rng.permutation(len(values))[:max_points]]
        ax.scatter(*pca.transform(shown).T, s=4 if len(values) > 500 else 10, alpha=0.4, label=f"{name} ({len(values)})")
    share = pca.explained_variance_ratio_
    ax.set(xlabel=f"PC 1 of {fit_on} ({share[0]:.0%} of its variance)", ylabel=f"PC 2 ({share[1]:.0%})")
    ax.legend(fontsize=8, markerscale=2)
    return ax, pca


def plot_distributions(values: dict, xlabel: str, ax=None, bins: int = 60, normal_std: float | None = None):
    """Overlaid density histograms, one per ``{name: values}`` entry (any shape, flattened).

    ``normal_std`` also draws the density of ``N(0, normal_std^2)``, for comparing with a target.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.2))
    flat = {name: _array(v).ravel() for name, v in values.items()}
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


def plot_shell(distances: dict, scores: dict, ax=None, max_points: int = 1500, seed: int = 0):
    """Where the discriminator draws its boundary in the real features: each patch's distance to its
    nearest normal training patch (x) against the discriminator's score ``D`` (y, high = normal), one
    cloud of points per group, and the boundary ``D = 0`` as a dashed line.

    ``distances`` and ``scores``: ``{name: [N]}`` with the same names and lengths (normal patches,
    fakes at several sigmas, real defects...); at most ``max_points`` of each are drawn (a seeded
    sample). Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    rng = np.random.default_rng(seed)
    for name, distance in distances.items():
        x, y = _array(distance).ravel(), _array(scores[name]).ravel()
        if x.shape != y.shape:
            raise ValueError(f"{name}: {x.size} distances but {y.size} scores")
        shown = rng.permutation(x.size)[:max_points]
        ax.scatter(x[shown], y[shown], s=4, alpha=0.35, label=name)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=1, label="boundary D = 0")
    ax.set(xlabel="distance to the nearest normal training patch", ylabel="discriminator score D (high = normal)")
    ax.legend(fontsize=8, markerscale=3)
    return ax
