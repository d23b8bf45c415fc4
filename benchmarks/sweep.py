"""Sweep training recipes over the development suite, on cached features: the table behind the default.

The backbone is frozen, so each set's features are extracted once (and kept under
``data/cache/sweep/``); every recipe then trains only its heads, for every seed, on every set, and is
scored on the set's test split exactly as ``simplenet-edu evaluate`` scores it (last step, the same
hold-out split, the same metrics). A recipe is a list of ``SimpleNetConfig`` overrides; each ``--grid``
axis multiplies the recipes::

    python -m benchmarks.sweep --grid adaptor=linear,identity lr_adaptor=1e-4,5e-4 --seeds 0 1 2

prints one Markdown row per recipe: per set the mean over the seeds of image AUROC / AUPRO (sets
without masks: image AUROC only), then the means over the sets and the worst seed-to-seed spread
(the largest per-set sample std of image AUROC). ``--output FILE.json`` keeps every number. The suite
is the development suite's folder (``--suite DIR``) plus the demo textures (``--demo``); sets that are
missing are skipped, saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

import simplenet_edu.simplenet.model as model_module
from benchmarks.common import (SUITE_DIR, SetFeatures, command, find_sets, parse_grid, parse_value, sweep_header,
                               sweep_note, sweep_row, sweep_summary, write_json)
from simplenet_edu.evaluation import metrics
from simplenet_edu.simplenet.config import SimpleNetConfig
from simplenet_edu.simplenet.model import SimpleNet
from simplenet_edu.stages.backbones import load_backbone


def test_metrics(features: SetFeatures, model: SimpleNet) -> dict:
    """Image AUROC of the set's test split, pixel AUROC and AUPRO where it has masks."""
    scores, maps = model.score_features(features.test.float(), features.grid, features.size)
    row = {"image_auroc": metrics.image_auroc(features.labels, scores.numpy())}
    if features.masks is not None:
        row["pixel_auroc"] = metrics.pixel_auroc(features.masks, maps.numpy())
        row["aupro"] = metrics.aupro(features.masks, maps.numpy())
    return row


@contextlib.contextmanager
def test_scores_at_checkpoints(features: SetFeatures, model: SimpleNet):
    """Diagnostic only (the question is whether validation tracks the test set): while it is open, every
    validation checkpoint of ``model``'s training also records the test split's metrics as ``test_*``.
    Nothing is selected on them."""
    validation_scores = model_module.validation_scores

    def traced(*args, **kwargs):
        record = validation_scores(*args, **kwargs)
        record.update({f"test_{k}": v for k, v in test_metrics(features, model).items()})
        model.train()                         # scoring switched to eval; training goes on
        return record

    model_module.validation_scores = traced
    try:
        yield
    finally:
        model_module.validation_scores = validation_scores


def run_one(features: SetFeatures, config: SimpleNetConfig, backbone, trace: bool = False) -> dict:
    """Train the heads of ``config`` on the set's training features and score its test split."""
    model = SimpleNet(config, backbone=backbone)
    model.resize_shape, model.image_shape = features.resize_shape, features.size    # as fixed at extraction
    train_idx, holdout_idx = model.split_holdout(len(features.train))
    bank = features.train[train_idx].float()
    holdout = features.train[holdout_idx].float() if holdout_idx else None
    validation = None
    if holdout is not None and config.val_checkpoints > 0:
        validation = features.validation(model, holdout_idx, config.seed)
    traced = test_scores_at_checkpoints(features, model) if trace and validation is not None \
        else contextlib.nullcontext()
    start = time.perf_counter()
    with traced:
        model.fit_features(bank, features.grid, holdout, progress=False, validation=validation)
    seconds = time.perf_counter() - start
    return {**test_metrics(features, model), "seconds_train": seconds,
            "final_loss": model.history[-1]["loss"], "selected_step": model.selected_step,
            "validation": [{k: v for k, v in h.items() if k.startswith(("val", "test")) or k == "step"}
                           for h in model.history if "val_score" in h]}


def main(argv: list[str] | None = None, recorded: str | None = None) -> None:
    """The sweep of ``argv``; ``recorded``: the command to print and save (default: this script's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="*", default=[], help="axes key=v1,v2 (or k1=a+k2=b,k1=c+k2=d)")
    parser.add_argument("--base", nargs="*", default=[], help="overrides applied to every recipe: key=value")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", type=Path, default=SUITE_DIR)
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--demo", action="store_true", help="also the three demo textures")
    parser.add_argument("--output", type=Path, help="JSON file with every number")
    parser.add_argument("--trace", action="store_true",
                        help="diagnostic: also score the test split at every validation checkpoint (JSON only)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))

    base = SimpleNetConfig(device="cpu", **{k: parse_value(v) for k, v in (b.split("=", 1) for b in args.base)})
    sets, skipped = find_sets(args.suite, args.demo, args.sets)
    for line in skipped:
        print(f"sweep: {line}", file=sys.stderr)
    if not sets:
        sys.exit("sweep: no data sets found")
    backbone = load_backbone(base.backbone, weights_path=base.weights_path, pretrained=base.pretrained)
    features = {name: SetFeatures(name, root, base, backbone) for name, root in sets.items()}
    names = list(sets)
    recorded = recorded or command("sweep", argv)
    print(f"command: {recorded}\n\n{sweep_note(args.seeds)}\n")
    print(sweep_header(names, {n for n in names if features[n].masks is not None}), flush=True)
    records = []
    for recipe in parse_grid(args.grid):
        results = {}
        for name in names:
            config = dataclasses.replace(base, **recipe)
            results[name] = []
            for seed in args.seeds:
                results[name].append(run_one(features[name], dataclasses.replace(config, seed=seed), backbone,
                                             args.trace))
                print(f"  {recipe} {name} seed {seed}: {results[name][-1]}", file=sys.stderr, flush=True)
        summary = sweep_summary(results)
        label = ", ".join(f"{k}={v}" for k, v in recipe.items()) or "base"
        print(sweep_row(label, summary, names), flush=True)
        records.append({"recipe": recipe, "results": results, "summary": summary})
    if args.output:
        write_json(args.output, {"command": recorded, "base": dataclasses.asdict(base), "records": records},
                   indent=1)


if __name__ == "__main__":
    main()
