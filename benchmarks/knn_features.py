"""How good are the frozen patch features themselves? Nearest-neighbour scores on the development suite.

A check on the feature side of the CPU default (``results/default_sweep.md``): PatchCore's idea, in
its plainest form, on the cached features of ``benchmarks.sweep`` (every set's train and test
images through the frozen backbone and local aggregation, at the embed dimensions given). A test
patch scores its distance to the nearest of (at most ``--bank``, chosen at random with seed 0)
training patches; the image score is the largest patch score; maps are upsampled and smoothed as
SimpleNet's. Nothing is trained, so the numbers say what the features allow, before any
discriminator::

    python -m benchmarks.knn_features --pretrain-embed-dim 384 --target-embed-dim 384

Prints a Markdown table; writes nothing (``results/default_sweep.md`` quotes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.common import SUITE_DIR, SetFeatures, find_sets
from simplenet_edu.evaluation import metrics
from simplenet_edu.evaluation.localization import anomaly_maps
from simplenet_edu.simplenet.config import SimpleNetConfig
from simplenet_edu.stages.backbones import load_backbone


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-embed-dim", type=int, default=384)
    parser.add_argument("--target-embed-dim", type=int, default=384)
    parser.add_argument("--bank", type=int, default=20000, help="training patches kept, chosen at random")
    parser.add_argument("--suite", type=Path, default=SUITE_DIR)
    parser.add_argument("--sets", nargs="*", help="only these sets")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = SimpleNetConfig(device="cpu", pretrain_embed_dim=args.pretrain_embed_dim,
                             target_embed_dim=args.target_embed_dim)
    sets, skipped = find_sets(args.suite, demo=False, names=args.sets)
    for line in skipped:
        print(f"knn_features: {line}", file=sys.stderr)
    backbone = load_backbone(config.backbone)
    print(f"| set | image AUROC | AUPRO |  (D = {args.target_embed_dim}, pretrain {args.pretrain_embed_dim})")
    print("|---|---|---|")
    for name, root in sets.items():
        features = SetFeatures(name, root, config, backbone)
        bank = features.train.float().flatten(0, 1)
        keep = torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[: args.bank]
        bank = bank[keep]
        squared = (bank ** 2).sum(1)
        scores = []
        for image in features.test.float():                                             # [P, D]
            distances = (image ** 2).sum(1, keepdim=True) - 2 * image @ bank.T + squared
            scores.append(distances.min(1).values.clamp_min(0).sqrt())
        grid = torch.stack(scores).view(len(scores), *features.grid)
        maps = anomaly_maps(grid, features.size, config.smoothing_sigma)
        image_auroc = metrics.image_auroc(features.labels, grid.flatten(1).max(1).values.numpy())
        aupro = "-" if features.masks is None else f"{metrics.aupro(features.masks, maps.numpy()):.3f}"
        print(f"| {name} | {image_auroc:.3f} | {aupro} |", flush=True)


if __name__ == "__main__":
    main()
