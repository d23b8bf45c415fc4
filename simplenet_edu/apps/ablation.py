"""Ablation: change one part of SimpleNet at a time and measure what it costs or buys.

Every row starts from the same configuration (by default the CPU default) and swaps exactly one part for a
variant from ``variants.py``. Rows are trained and evaluated with several seeds; the table gives
mean ± std (:func:`~simplenet_edu.utils.stats.mean_std`: the sample standard deviation) of image AUROC,
pixel AUROC and AUPRO, and the training time.

It is cheap because the backbone is frozen: for each seed the backbone runs once over the training,
held-out and test images, and every row trains only its heads on those cached features
(:meth:`SimpleNet.fit_features`). The cache holds the per-layer features, which the ``conv`` adaptor
reads; every other row reads their pooled form, the paper's patch features.

>>> rows = run_ablation("data/demo/brick", seeds=3, base_config=SimpleNetConfig())   # doctest: +SKIP
>>> print(to_markdown(rows))                                                         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import data as data_lib
from ..evaluation import metrics
from ..evaluation.report import budget_text, input_text
from ..simplenet.config import CHOICES, SimpleNetConfig
from ..simplenet.model import SimpleNet, aggregate
from ..simplenet.variants import describe
from ..utils.errors import InputError
from ..utils.stats import MEAN_STD_NOTE, format_mean_std, mean_std

METRICS = ("image_auroc", "pixel_auroc", "aupro", "seconds_train")
DEFAULT_ROW = "base configuration"   # the row without a change: the choices of base_config (not always the paper's)


def all_variants(base_config: SimpleNetConfig) -> list[tuple[str, str]]:
    """Every ``(part, choice)`` that differs from ``base_config``, in the order of ``CHOICES``."""
    return [(part, name) for part, names in CHOICES.items() for name in names if name != getattr(base_config, part)]


def _parse(variant) -> tuple[str, str]:
    part, name = variant.split("=", 1) if isinstance(variant, str) else variant
    if part not in CHOICES:
        raise InputError("variants", f"unknown part {part!r}; choose from {', '.join(CHOICES)}")
    if name not in CHOICES[part]:
        raise InputError(part, f"unknown variant {name!r}; choose from {', '.join(CHOICES[part])}")
    return part, name


class _SeedFeatures:
    """One seed's cached features: train / held-out / test, per layer and pooled, and the test labels."""

    def __init__(self, root: Path, config: SimpleNetConfig, progress: bool):
        start = time.perf_counter()
        model = SimpleNet(config)
        images = model.training_images(root)
        train_idx, held_idx = model.split_holdout(len(images))
        train, holdout = images[train_idx], (images[held_idx] if held_idx else None)
        test = data_lib.MVTecDataset(root, split="test", image_size=model.resize_shape, crop_size=model.image_shape)
        if len(set(test.labels)) < 2:
            raise InputError(root / "test", "needs normal and anomalous images: AUROC is undefined otherwise")
        items = [test[i] for i in range(len(test))]
        test_images = torch.stack([item["image"] for item in items])
        self.labels = np.asarray(test.labels, dtype=int)
        self.defect_types = list(test.defect_types)
        self.masks = np.stack([item["mask"].numpy() for item in items]).astype(np.uint8) if test.has_masks else None
        self.size = tuple(test_images.shape[-2:])
        self.shapes = model.resize_shape, model.image_shape  # fixed by the training images (keep_aspect)
        self.grid = model.grid()
        self.backbone = model.extractor.backbone
        self.layers = {
            name: None if images is None else model.extract(images, progress=progress, layers=True).cpu()
            for name, images in (("train", train), ("holdout", holdout), ("test", test_images))
        }
        self.pooled = {name: None if f is None else aggregate(f, config.target_embed_dim)
                       for name, f in self.layers.items()}
        self.seconds = time.perf_counter() - start

    def inputs(self, model: SimpleNet) -> dict:
        """The features this model's adaptor reads."""
        return self.layers if model.adaptor.reads_layers else self.pooled


def _evaluate_row(cache: _SeedFeatures, config: SimpleNetConfig) -> dict:
    # A row compares rankings, not thresholds: its heads train once, without threshold folds.
    model = SimpleNet(dataclasses.replace(config, threshold_folds=0), backbone=cache.backbone)
    model.resize_shape, model.image_shape = cache.shapes
    features = cache.inputs(model)
    model.fit_features(features["train"], cache.grid, features["holdout"], progress=False)
    scores, maps = model.score_features(features["test"], cache.grid, cache.size)
    masks, maps = (cache.masks, maps.numpy()) if cache.masks is not None else (None, None)
    summary = metrics.summarize(cache.labels, scores.numpy(), cache.defect_types, masks=masks, maps=maps,
                                normal_threshold=model.threshold_normal)
    return {"image_auroc": summary["image_auroc"], "pixel_auroc": summary["pixel_auroc"],
            "aupro": summary["aupro"], "seconds_train": model.timings["seconds_train"]}


def run_ablation(root, seeds, base_config: SimpleNetConfig | None = None, variants=None,
                 progress: bool = True) -> list[dict]:
    """Train and evaluate the base configuration and one row per variant, for each seed.

    Args:
        root: MVTec-layout category folder (``train/good`` to train, ``test`` with masks to score).
        seeds: how many seeds (``base_config.seed``, ``+1``, ...) or the list of seeds.
        base_config: the configuration every row starts from (default ``SimpleNetConfig()``).
        variants: ``["generator=perlin", ("loss", "bce"), ...]``; default: every variant.
        progress: a progress bar over rows.

    Returns:
        One dict per row, the base first: ``variant`` (``"part=choice"`` or ``DEFAULT_ROW``),
        ``part``, ``choice``, ``seeds``, ``<metric>_mean`` and ``<metric>_std`` for image_auroc,
        pixel_auroc, aupro and seconds_train, and ``per_seed`` (the raw values).
    """
    base = base_config or SimpleNetConfig()
    chosen = all_variants(base) if variants is None else [_parse(v) for v in variants]
    seed_list = [base.seed + i for i in range(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise InputError("seeds", "at least one seed is needed")
    root = data_lib.check_mvtec_folder(Path(root))
    rows = [(DEFAULT_ROW, None, None)] + [(f"{p}={n}", p, n) for p, n in chosen if getattr(base, p) != n]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in rows}
    bar = tqdm(total=len(rows) * len(seed_list), desc="ablation", disable=not progress)
    feature_seconds = []
    for seed in seed_list:
        cache = _SeedFeatures(root, dataclasses.replace(base, seed=seed), progress=False)
        feature_seconds.append(cache.seconds)
        for name, part, choice in rows:
            change = {} if part is None else {part: choice}
            results[name].append(_evaluate_row(cache, dataclasses.replace(base, seed=seed, **change)))
            bar.set_postfix(row=name)
            bar.update()
    bar.close()

    return summarize(rows, results, seed_list, feature_seconds)


def summarize(rows: list[tuple[str, str | None, str | None]], results: dict[str, list[dict]], seeds: list[int],
              feature_seconds: list[float]) -> list[dict]:
    """The table's rows from each row's per-seed results: ``<metric>_mean`` and ``<metric>_std`` (the
    sample std; ``None`` for one seed) of every metric, the raw values and the shared feature time.

    ``rows``: ``(variant, part, choice)`` in table order; ``results[variant]``: one dict of
    :data:`METRICS` per seed; ``feature_seconds``: the backbone's time per seed, shared by all rows."""
    table = []
    for name, part, choice in rows:
        row = {"variant": name, "part": part, "choice": choice, "seeds": list(seeds)}
        for key in METRICS:
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(r[key] for r in results[name])
        row["per_seed"] = results[name]
        row["seconds_features_per_seed"] = mean_std(feature_seconds)[0]
        table.append(row)
    return table


def header(data: Path, command: str, config: SimpleNetConfig, rows: list[dict]) -> str:
    """The Markdown file's title and paragraph above :func:`to_markdown`'s table: the command, the base
    configuration and what a cell holds."""
    seeds = ", ".join(str(seed) for seed in rows[0]["seeds"])
    return (f"# Ablation on {Path(data).name}\n\nMade by `{command}`: one change at a time from the base "
            f"configuration ({describe(config)}); backbone {config.backbone}, {input_text(config)}, "
            f"{budget_text(config)}. Cells: {MEAN_STD_NOTE}, over seeds {seeds}; brackets: change of the mean "
            f"against the base row.\n\n")


def to_markdown(rows: list[dict]) -> str:
    """The ablation as a Markdown table: mean ± std per metric, the change against the default row."""
    def cell(row, key, digits=3):
        return format_mean_std(row[f"{key}_mean"], row[f"{key}_std"], digits)

    base = next((r for r in rows if r["variant"] == DEFAULT_ROW), None)

    def delta(row, key):
        if base is None or row is base or row[f"{key}_mean"] is None or base[f"{key}_mean"] is None:
            return ""
        return f" ({row[f'{key}_mean'] - base[f'{key}_mean']:+.3f})"

    lines = ["| variant | image AUROC | pixel AUROC | AUPRO | train s |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {cell(row, 'image_auroc')}{delta(row, 'image_auroc')} | "
                     f"{cell(row, 'pixel_auroc')}{delta(row, 'pixel_auroc')} | {cell(row, 'aupro')}{delta(row, 'aupro')} | "
                     f"{cell(row, 'seconds_train', 1)} |")
    return "\n".join(lines) + "\n"


def plot_ablation(rows: list[dict], metric_names=("image_auroc", "pixel_auroc", "aupro"), ax=None):
    """Grouped horizontal bars, one group per row, with the seeds' spread as error bars and the
    default row's values as dotted lines."""
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.45 * len(rows) * len(metric_names) / 2 + 1.2))
    height = 0.8 / len(metric_names)
    y = np.arange(len(rows))
    for i, key in enumerate(metric_names):
        means = [np.nan if r[f"{key}_mean"] is None else r[f"{key}_mean"] for r in rows]
        stds = [0.0 if r[f"{key}_std"] is None else r[f"{key}_std"] for r in rows]
        bars = ax.barh(y + (i - (len(metric_names) - 1) / 2) * height, means, height, xerr=stds,
                       label=key.replace("_", " "), capsize=2)
        if names and names[0] == DEFAULT_ROW and not np.isnan(means[0]):
            ax.axvline(means[0], color=bars.patches[0].get_facecolor(), linestyle=":", linewidth=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set(xlim=(0.0, 1.02), xlabel="score (mean ± std over seeds)", title="one change at a time")
    ax.legend(fontsize=8, loc="lower left")
    return ax
