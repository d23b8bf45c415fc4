"""Why the grid-batch variants of SimpleNet swing between seeds: the numbers.

The variants that need whole feature grids (``generator=perlin``, ``generator=mixup``,
``discriminator=conv``) train through ``GridBatches`` instead of shuffled patches. This script
measures that path on one data set (default: the development suite's ``hazelnut_toy``), with the CPU
default configuration, and prints Markdown tables:

1. **batch composition**: images per step, window side, cells per step, steps per pass, and how
   often each cell of the grid is visited in one pass (border against centre);
2. **Perlin masks on those windows**: share of masked cells, share of empty masks, share of steps
   with no fake cell at all (the ``changed`` mask of ``train_step`` then leaves no fake to learn from);
3. **BatchNorm**: the discriminator's running statistics after training against the statistics of
   the features it scores at test time (all cells of whole normal images);
4. **quality over seeds**: image AUROC, pixel AUROC and AUPRO of each grid variant (and of the paper's
   Gaussian noise sent through the same grid path), per seed, with the library's batching
   (``current``) and with the alternatives compared (``--batchings``); mean ± sample std.

    python -m benchmarks.grid_path [--data DIR] [--seeds 0 1 2] [--output results/grid_path]
    python -m benchmarks.grid_path --render results/archive/grid_path_hazelnut.json    # no training

``--smoke`` runs everything tiny (64 px, 20 steps) to check the script. Timings are not reported:
the question is quality and its spread, not speed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

import simplenet_edu.simplenet.model as model_module
from benchmarks.common import ROOT, SUITE_DIR, cell, command, made_by, seeds_note, spread, write_md_json
from simplenet_edu import data as data_lib
from simplenet_edu.evaluation import metrics
from simplenet_edu.simplenet.anomaly_generator import PerlinNoise
from simplenet_edu.simplenet.batches import GridBatches
from simplenet_edu.simplenet.config import SimpleNetConfig
from simplenet_edu.simplenet.model import SimpleNet

VARIANTS = {
    "gaussian, grid path": dict(generator="gaussian"),   # the paper's noise and MLP, fed grid batches
    "generator=perlin": dict(generator="perlin"),
    "generator=mixup": dict(generator="mixup"),
    "discriminator=conv": dict(discriminator="conv"),
}


class CurrentBatches(GridBatches):
    """The library's ``GridBatches``, as it is in the tree when the script runs."""


class SharedWindowBatches:
    """The batching compared against the library's: ``k = max(2, batch //
    (h*w))`` images, one random ``c x c`` window shared by all of them, ``c = isqrt(batch / k)``."""

    def __init__(self, bank, grid, batch_size, generator):
        self.bank = bank.view(len(bank), *grid, bank.shape[-1])
        self.generator = generator
        n, h, w = self.bank.shape[:3]
        self.images = max(2, min(n, batch_size // (h * w)))
        self.side = max(2, min(h, w, math.isqrt(max(1, batch_size // self.images))))
        self.steps = max(1, math.ceil(n * h * w / (self.images * self.side ** 2)))

    def __len__(self):
        return self.steps

    def __iter__(self):
        n, h, w = self.bank.shape[:3]
        c = self.side
        for _ in range(self.steps):
            idx = torch.randperm(n, generator=self.generator)[: self.images]
            top = torch.randint(0, h - c + 1, (), generator=self.generator).item()
            left = torch.randint(0, w - c + 1, (), generator=self.generator).item()
            yield self.bank[idx.to(self.bank.device), top:top + c, left:left + c].float()


class TiledBatches:
    """A candidate fix: every image's grid cut into ``c x c`` tiles (the last row and column of tiles
    aligned to the far edge), all (image, tile) pairs shuffled once per pass, ``k`` tiles per step from
    the shuffled order (cyclically). Every cell is visited about once per pass, as with shuffled
    patches, and a step mixes ``k`` images."""

    tiles_per_step = 8

    def __init__(self, bank, grid, batch_size, generator):
        self.bank = bank.view(len(bank), *grid, bank.shape[-1])
        self.generator = generator
        n, h, w = self.bank.shape[:3]
        k = self.tiles_per_step
        self.side = c = max(2, min(h, w, math.isqrt(max(1, batch_size // k))))
        tops = sorted(set(list(range(0, h - c + 1, c)) + [h - c]))
        lefts = sorted(set(list(range(0, w - c + 1, c)) + [w - c]))
        self.tiles = [(i, t, l) for i in range(n) for t in tops for l in lefts]
        self.images = k
        self.steps = max(1, math.ceil(len(self.tiles) / k))

    def __len__(self):
        return self.steps

    def __iter__(self):
        order = torch.randperm(len(self.tiles), generator=self.generator).tolist()
        c = self.side
        for step in range(self.steps):
            chosen = [self.tiles[order[(step * self.images + j) % len(order)]] for j in range(self.images)]
            yield torch.stack([self.bank[i, t:t + c, l:l + c] for i, t, l in chosen]).float()


class Tiled2(TiledBatches):
    tiles_per_step = 2


BATCHINGS = {"shared-window": SharedWindowBatches, "tiled-2x16": Tiled2, "tiled-8x8": TiledBatches,
             "current": CurrentBatches}


def composition(batches_cls, n: int, grid: tuple[int, int], batch_size: int) -> dict:
    """Images, window, steps, and per-cell visits over one pass of a fake bank of ``n`` images."""
    h, w = grid
    index = torch.arange(n * h * w, dtype=torch.float32).view(n, h * w, 1)
    batches = batches_cls(index, grid, batch_size, torch.Generator().manual_seed(0))
    visits = torch.zeros(n * h * w)
    shapes, per_step_images = [], []
    for batch in batches:
        ids = batch.flatten().long()
        visits[ids] += 1
        shapes.append(tuple(batch.shape[:3]))
        per_step_images.append(len(set((ids // (h * w)).tolist())))
    per_cell = visits.view(n, h, w).mean(0)
    border = torch.cat([per_cell[0], per_cell[-1], per_cell[1:-1, 0], per_cell[1:-1, -1]])
    centre = per_cell[h // 4: h - h // 4, w // 4: w - w // 4]
    return {"batch shape [k, c, c]": str(list(shapes[0])), "steps per pass": len(shapes),
            "cells per step": int(np.prod(shapes[0])),
            "distinct images per step": statistics.mean(per_step_images),
            "visits per cell: corner": float(per_cell[0, 0]), "border mean": float(border.mean()),
            "centre mean": float(centre.mean()), "cells never visited (%)": 100 * float((visits == 0).float().mean())}


def perlin_coverage(shape: tuple[int, int, int], threshold: float, draws: int = 400) -> dict:
    """The Perlin variant's masks on batches of ``shape = (k, h, w)``."""
    noise = PerlinNoise(sigma=1.0, threshold=threshold)
    rng = torch.Generator().manual_seed(0)
    shares, empty_masks, empty_steps = [], 0, 0
    k, c, c2 = shape
    for _ in range(draws):
        masks = noise.mask(k, c, c2, rng)
        per_image = masks.flatten(1).float().mean(1)
        shares += per_image.tolist()
        empty_masks += int((per_image == 0).sum())
        empty_steps += int(masks.sum() == 0)
    nonempty = [s for s in shares if s > 0]
    return {"masked cells per fake image (%)": 100 * statistics.mean(shares),
            "... of non-empty masks (%)": 100 * statistics.mean(nonempty) if nonempty else 0.0,
            "empty masks (%)": 100 * empty_masks / (draws * k),
            "steps without any fake cell (%)": 100 * empty_steps / draws,
            "fake cells per step": statistics.mean(shares) * k * c * c2}


@torch.no_grad()
def batchnorm_gap(model: SimpleNet, bank: torch.Tensor, grid) -> float | None:
    """Mean |running_mean - mean| / std over the first BatchNorm's channels, where ``mean`` and ``std``
    are those of the BatchNorm's input over every cell of the normal training images."""
    disc = model.discriminator
    feats = model.adaptor(bank.float().view(len(bank), *grid, -1))
    if hasattr(disc, "body") and len(disc.body):
        linear, norm = disc.body[0], disc.body[1]
        x = linear(feats.reshape(-1, feats.shape[-1]))
    elif hasattr(disc, "net"):
        conv, norm = disc.net[0], disc.net[1]
        x = conv(feats.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(-1, conv.out_channels)
    else:
        return None
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    return float(((norm.running_mean - mean).abs() / std).mean())


def measure(args, recorded: str) -> dict:
    """Everything the tables show, as a JSON-ready dict (``command``, ``data``, ``config``, ``grid``,
    ``composition``, ``perlin``, ``rows``: one per batching, variant and seed)."""
    base = dict(device="cpu")
    if args.smoke:
        base.update(image_size=64, steps=20, pretrain_embed_dim=64, target_embed_dim=64, dsc_hidden=64)
    if args.steps:
        base["steps"] = args.steps
    config = SimpleNetConfig(**base)
    root = Path(args.data)
    if not (root / "train" / "good").is_dir():
        root = data_lib.make_demo_dataset(ROOT / "data" / "grid-path-demo", "brick", image_size=64 if args.smoke else 256)
    shared = SimpleNet(config)
    backbone = shared.backbone
    images = shared.training_images(root)
    test = data_lib.MVTecDataset(root, split="test", image_size=config.image_size, crop_size=config.crop_size)
    stacked = data_lib.stack(test, progress=False)
    labels = stacked["labels"].numpy()
    masks = stacked["masks"].numpy().astype(np.uint8) if test.has_masks else None
    grid = shared.grid()
    bank_all = shared.extract(images).cpu()
    test_bank = shared.extract(stacked["images"]).cpu()
    out = {"command": recorded, "data": str(root), "config": config.to_dict(), "grid": list(grid),
           "n_train_images": len(images)}

    n_train = len(shared.split_holdout(len(images))[0])
    out["composition"] = {name: composition(cls, n_train, grid, config.batch_size) for name, cls in BATCHINGS.items()
                          if name in args.batchings}
    draws = 50 if args.smoke else 400
    cov = {}
    for name, c in out["composition"].items():
        k, side = json.loads(c["batch shape [k, c, c]"])[:2]
        cov[name] = perlin_coverage((k, side, side), config.perlin_threshold, draws)
    cov[f"2 whole {grid[0]} x {grid[1]} grids"] = perlin_coverage((2, grid[0], grid[1]), config.perlin_threshold, draws)
    out["perlin"] = cov

    rows = []
    original = model_module.GridBatches
    try:
        for batching in args.batchings:
            model_module.GridBatches = BATCHINGS[batching]     # the name SimpleNet's training loop reads
            for variant in args.variants:
                for seed in args.seeds:
                    cfg = SimpleNetConfig(**{**base, **VARIANTS[variant], "seed": seed})
                    model = SimpleNet(cfg, backbone=backbone)
                    train, holdout = model.split_holdout(len(images))
                    if variant == "gaussian, grid path":
                        model.discriminator.needs_grid = True   # the MLP takes any [..., D]: force grids
                    model.fit_features(bank_all[train], grid, bank_all[holdout] if holdout else None, progress=False)
                    scores, amaps = model.score_features(test_bank, grid)
                    with torch.no_grad():
                        patch = model.feature_scores(test_bank[labels == 0], grid).cpu()      # [M, h, w]
                    ring = torch.zeros(grid, dtype=torch.bool)
                    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
                    top = patch.flatten(1).argmax(1)
                    row = {"batching": batching, "variant": variant, "seed": seed,
                           "max_on_border": float(ring.flatten()[top].float().mean()),
                           "image_auroc": metrics.image_auroc(labels, scores.numpy()),
                           "pixel_auroc": metrics.pixel_auroc(masks, amaps.numpy()) if masks is not None else None,
                           "aupro": metrics.aupro(masks, amaps.numpy()) if masks is not None else None,
                           "bn_gap": batchnorm_gap(model, bank_all[train], grid),
                           "p_fake_last": model.history[-1].get("p_fake"),
                           "d_fake_last": model.history[-1].get("d_fake"),
                           "d_normal_last": model.history[-1].get("d_normal")}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        model_module.GridBatches = original
    out["rows"] = rows
    return out


def describe(config: dict) -> str:
    """The run's configuration in one line (each row then changes its variant's part)."""
    return (f"{config['backbone']}, {config['image_size']} px, batch_size {config['batch_size']} patches, "
            f"{config['steps']} steps; adaptor {config['adaptor']}, loss {config['loss']}, noise "
            f"{config['noise_std']} x feature std")


def markdown(out: dict, rendered_by: str | None = None) -> str:
    """The tables of :func:`measure`'s results (``rendered_by``: the command that rendered a saved run)."""
    config, grid, rows = out["config"], out["grid"], out["rows"]
    lines = [f"# The grid training path on {Path(out['data']).name}", "",
             f"{made_by(out['command'])}. Configuration: {describe(config)}; grid {grid[0]} x {grid[1]}."
             + (f" Tables rendered from the saved results by `{rendered_by}`." if rendered_by else ""), ""]
    comp = out["composition"]
    lines += ["## 1. Batch composition (one pass)", "", "| | " + " | ".join(comp) + " |", "|---|" + "---|" * len(comp)]
    for key in next(iter(comp.values())):
        lines.append(f"| {key} | " + " | ".join(f"{c[key]:.2f}" if isinstance(c[key], float) else str(c[key])
                                                for c in comp.values()) + " |")
    cov = out["perlin"]
    lines += ["", f"## 2. Perlin masks (threshold {config['perlin_threshold']}, emptied with probability 0.5)", "",
              "| | " + " | ".join(cov) + " |", "|---|" + "---|" * len(cov)]
    for key in next(iter(cov.values())):
        lines.append(f"| {key} | " + " | ".join(f"{c[key]:.1f}" for c in cov.values()) + " |")

    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    lines += ["", "## 3-4. BatchNorm gap and quality over seeds", "",
              "BN gap: mean over channels of |running mean - test-time mean| / test-time std at the "
              "discriminator's first BatchNorm (0 = the statistics it normalises with are those it meets).", "",
              "Max on border: share of normal test images whose highest-scoring patch lies in the outer "
              f"two rings of the grid ({100 * (1 - (grid[0] - 4) * (grid[1] - 4) / (grid[0] * grid[1])):.0f}% "
              "of the cells).", "", seeds_note(seeds), "",
              "| batching | variant | image AUROC per seed | mean ± std | pixel AUROC | AUPRO | BN gap | max on border |",
              "|---|---|---|---|---|---|---|---|"]
    for batching in dict.fromkeys(r["batching"] for r in rows):
        for variant in dict.fromkeys(r["variant"] for r in rows):
            sel = [r for r in rows if r["batching"] == batching and r["variant"] == variant]
            if not sel:
                continue

            def stat(key):
                value = spread([r[key] for r in sel])
                return "n/a" if value is None else cell(value)

            per_seed = ", ".join(f"{r['image_auroc']:.3f}" for r in sel)
            lines.append(f"| {batching} | {variant} | {per_seed} | {stat('image_auroc')} | {stat('pixel_auroc')} | "
                         f"{stat('aupro')} | {stat('bn_gap')} | {stat('max_on_border')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(SUITE_DIR / "hazelnut_toy"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batchings", nargs="+", default=["shared-window", "current"], choices=list(BATCHINGS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", help="writes OUTPUT.md and OUTPUT.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--steps", type=int, help="optimiser steps of every run (default: the CPU default's)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-print the tables of a saved --output and rewrite its .md")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.render:
        out = json.loads(args.render.read_text())
        text = markdown(out, rendered_by=command("grid_path", argv))
        print(text)
        write_md_json(args.render, text, out)
        return 0
    torch.set_num_threads(args.threads)
    out = measure(args, command("grid_path", argv))
    text = markdown(out)
    print(text)
    if args.output:
        write_md_json(args.output, text, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
