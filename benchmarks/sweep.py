"""Sweep training recipes over the development suite, on cached features: the table behind the default.

The backbone is frozen, so each set's features are extracted once (and kept under
``data/cache/sweep/``); every recipe then trains only its heads, for every seed, on every set, and is
scored on the set's test split exactly as ``simplenet-edu evaluate`` scores it (last step, the same
hold-out split, the same metrics). A recipe is a list of ``SimpleNetConfig`` overrides; each ``--grid``
axis multiplies the recipes::

    python benchmarks/sweep.py --grid adaptor=linear,identity lr_adaptor=1e-4,5e-4 --seeds 0 1 2

prints one Markdown row per recipe: per set the mean over the seeds of image AUROC / AUPRO (sets
without masks: image AUROC only), then the means over the sets and the worst seed-to-seed spread.
``--output FILE.json`` keeps every number. The suite is ``../shared/data`` (or ``--suite DIR``) plus
the demo textures (``--demo``); sets that are missing are skipped, saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simplenet_edu import data as data_lib  # noqa: E402
from simplenet_edu.evaluation.evaluator import metrics  # noqa: E402
from simplenet_edu.simplenet.model import SimpleNet
from simplenet_edu.simplenet.config import SimpleNetConfig

SUITE = ("hazelnut_toy", "metal_plate", "cookie", "solar_cell")
DEMO = ("brick", "gravel", "grass")


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def parse_grid(axes: list[str]) -> list[dict]:
    """``["a=1,2", "b=x"]`` -> ``[{a: 1, b: x}, {a: 2, b: x}]``; ``a=1+b=2`` ties values together."""
    choices = []
    for axis in axes:
        if "+" in axis:  # tied values: every comma-separated option names all its keys
            choices.append([dict((k, parse_value(v)) for k, v in (p.split("=", 1) for p in option.split("+")))
                            for option in axis.split(",")])
        else:
            key, values = axis.split("=", 1)
            choices.append([{key: parse_value(v)} for v in values.split(",")])
    return [dict(kv for part in combo for kv in part.items()) for combo in itertools.product(*choices)] or [{}]


def suite_sets(suite: Path, demo: bool, names: list[str] | None) -> dict[str, Path]:
    sets = {}
    for name in SUITE:
        if (suite / name / "train" / "good").is_dir():
            sets[name] = suite / name
        else:
            print(f"sweep: skipping {name}: {suite / name} not found", file=sys.stderr)
    if demo:
        for name in DEMO:
            sets[name] = data_lib.make_demo_dataset(ROOT / "data" / "demo", name)
    if names:
        sets = {k: v for k, v in sets.items() if k in names}
    return sets


class SetFeatures:
    """All of one set's images through the frozen backbone once: train ``[N, P, D]``, test ``[M, P, D]``,
    test labels, masks ``[M, H, W]`` (or None) and defect types."""

    def __init__(self, name: str, root: Path, config: SimpleNetConfig, backbone):
        key = f"v2-{name}-{config.backbone}-{config.image_size}-{config.crop_size}-{config.target_embed_dim}" \
              f"-{config.pretrain_embed_dim}" + ("-aspect" if config.keep_aspect else "")
        path = ROOT / "data" / "cache" / "sweep" / f"{key}.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=False)
        else:
            model = SimpleNet(dataclasses.replace(config, device="cpu"), backbone=backbone)
            train = model._training_images(root)
            test = data_lib.MVTecDataset(root, "test", model.resize_shape, model.image_shape)
            items = [test[i] for i in range(len(test))]
            cached = {
                "train": model.extract(train, progress=True).half(),
                "train_images": (train * 255).round().to(torch.uint8),     # to paint validation sets on
                "test": model.extract(torch.stack([it["image"] for it in items]), progress=True).half(),
                "labels": np.asarray(test.labels, dtype=int),
                "masks": np.stack([it["mask"].numpy() for it in items]).astype(np.uint8) if test.has_masks else None,
                "defect_types": list(test.defect_types),
                "grid": model.grid(), "size": model.image_shape, "resize_shape": model.resize_shape,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(cached, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
        cached.setdefault("resize_shape", cached["size"])         # caches made before keep_aspect
        self.__dict__.update(cached)
        self.painted = {}                                   # (seed, count) -> (ValidationSet, features)

    def validation(self, model: SimpleNet, holdout_idx, seed: int):
        """The painted validation set of this seed's held-out images and its features (built once)."""
        key = (seed, model.config.val_images)
        if key not in self.painted:
            from simplenet_edu.simplenet.validation import painted_validation_set

            images = self.train_images[holdout_idx][: model.config.val_images].float() / 255
            painted = painted_validation_set(images, seed)
            self.painted[key] = (painted, model.extract(painted.images))
        return self.painted[key]


def test_metrics(features: SetFeatures, model: SimpleNet) -> dict:
    scores, maps = model.score_features(features.test.float(), features.grid, features.size)
    row = {"image_auroc": metrics.image_auroc(features.labels, scores.numpy())}
    if features.masks is not None:
        row["pixel_auroc"] = metrics.pixel_auroc(features.masks, maps.numpy())
        row["aupro"] = metrics.aupro(features.masks, maps.numpy())
    return row


def run_one(features: SetFeatures, config: SimpleNetConfig, backbone, trace: bool = False) -> dict:
    """Train the heads of ``config`` on the set's training features and score its test split."""
    model = SimpleNet(config, backbone=backbone)
    model.resize_shape, model.image_shape = features.resize_shape, features.size    # as fixed at extraction
    train_idx, holdout_idx = model._split_holdout(torch.arange(len(features.train)))
    bank = features.train[train_idx].float()
    holdout = features.train[holdout_idx].float() if holdout_idx is not None else None
    validation = None
    if holdout is not None and config.val_checkpoints > 0:
        validation = features.validation(model, holdout_idx, config.seed)
    if trace and validation is not None:
        # Diagnostic only (the sweep's question is whether validation tracks the test set): score the
        # test split too at every checkpoint. Nothing is selected on it.
        validate = model._validate

        def traced(val, grid):
            record = validate(val, grid)
            record.update({f"test_{k}": v for k, v in test_metrics(features, model).items()})
            model.train()
            return record

        model._validate = traced
    start = time.perf_counter()
    model.fit_features(bank, features.grid, holdout, progress=False, validation=validation)
    seconds = time.perf_counter() - start
    row = {**test_metrics(features, model), "seconds_train": seconds,
           "final_loss": model.history[-1]["loss"], "selected_step": model.selected_step,
           "validation": [{k: v for k, v in h.items() if k.startswith(("val", "test")) or k == "step"}
                          for h in model.history if "val_score" in h]}
    return row


def summarise(results: dict[str, list[dict]]) -> dict:
    """Per set: mean and std over seeds of each metric; then the means over the sets."""
    per_set = {}
    for name, rows in results.items():
        per_set[name] = {}
        for key in ("image_auroc", "pixel_auroc", "aupro", "seconds_train"):
            values = [r[key] for r in rows if key in r]
            if values:
                per_set[name][key] = (float(np.mean(values)), float(np.std(values)))
    means = {key: float(np.mean([s[key][0] for s in per_set.values() if key in s]))
             for key in ("image_auroc", "pixel_auroc", "aupro") if any(key in s for s in per_set.values())}
    # One seed has no spread to speak of: None, printed as "-".
    worst_spread = (max(s["image_auroc"][1] for s in per_set.values())
                    if any(len(rows) > 1 for rows in results.values()) else None)
    return {"per_set": per_set, "mean": means, "worst_image_auroc_std": worst_spread}


def header_markdown(names: list[str], with_masks: set[str], extra: tuple[str, ...] = ()) -> str:
    """The table's two header lines: per set ``img / AUPRO`` (``img`` for sets without masks)."""
    columns = ["recipe", *(f"{n} img / AUPRO" if n in with_masks else f"{n} img" for n in names),
               "mean img", "mean AUPRO", "worst img std", *extra]
    return "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"


def row_markdown(label: str, summary: dict, names: list[str]) -> str:
    cells = []
    for name in names:
        s = summary["per_set"][name]
        cell = f"{s['image_auroc'][0]:.3f}"
        if "aupro" in s:
            cell += f" / {s['aupro'][0]:.3f}"
        cells.append(cell)
    m = summary["mean"]
    spread = summary["worst_image_auroc_std"]
    return (f"| {label} | " + " | ".join(cells) + f" | {m['image_auroc']:.3f} | {m.get('aupro', float('nan')):.3f} | "
            f"{'-' if spread is None else f'{spread:.3f}'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="*", default=[], help="axes key=v1,v2 (or k1=a+k2=b,k1=c+k2=d)")
    parser.add_argument("--base", nargs="*", default=[], help="overrides applied to every recipe: key=value")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--demo", action="store_true", help="also the three demo textures")
    parser.add_argument("--output", type=Path, help="JSON file with every number")
    parser.add_argument("--trace", action="store_true",
                        help="diagnostic: also score the test split at every validation checkpoint (JSON only)")
    args = parser.parse_args()

    base = SimpleNetConfig(device="cpu", **{k: parse_value(v) for k, v in (b.split("=", 1) for b in args.base)})
    sets = suite_sets(args.suite, args.demo, args.sets)
    if not sets:
        sys.exit("sweep: no data sets found")
    from simplenet_edu.stages.backbones import load_backbone

    backbone = load_backbone(base.backbone, weights_path=base.weights_path, pretrained=base.pretrained)
    features = {name: SetFeatures(name, root, base, backbone) for name, root in sets.items()}
    names = list(sets)
    print(f"command: python benchmarks/sweep.py {' '.join(sys.argv[1:])}\n")
    print(header_markdown(names, {n for n in names if features[n].masks is not None}), flush=True)
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
        summary = summarise(results)
        label = ", ".join(f"{k}={v}" for k, v in recipe.items()) or "base"
        print(row_markdown(label, summary, names), flush=True)
        records.append({"recipe": recipe, "results": results, "summary": summary})
    if args.output:
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_text(json.dumps({"command": sys.argv, "base": dataclasses.asdict(base), "records": records},
                                  indent=1, default=str) + "\n")
        os.replace(tmp, args.output)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
    main()
