"""How fast is simplenet-edu on a CPU, and where does the time and memory go?

    python -m benchmarks.run [--output FILE.json] [--quick | --smoke]

One command, a few minutes on two cores. Every speed figure is a *ratio* of two timings taken back to
back in the same process, so that it means something on a machine shared with other jobs; absolute
seconds are printed too, for the record. What each figure measures and why is in
``benchmarks/README.md``. In short, per data set (the demo set, and ``hazelnut_toy`` when present):

- ``cached_vs_recompute_epoch_ratio``: one training epoch on cached patch features (what ``fit``
  does) against one epoch that runs the frozen backbone and aggregation again for every batch of 8
  images (what the official code does);
- ``fit_vs_backbone_pass_ratio``: ``fit`` against one backbone pass over the training images;
- ``head_flops_fraction_of_matmul``: the FLOP rate the adaptor and discriminator reach during
  training against plain ``torch.mm`` calls of the same shapes;
- ``predict_vs_backbone_ratio``: ``predict`` against a bare backbone forward, both at batch 8;
- ``peak_rss_mb_fit``, ``peak_rss_mb_predict``: peak memory, each in a fresh process.

Then ``scaling`` (fit time and memory for 25 to 200 training images) and ``cache_mb_per_image`` (the
feature cache's size per image for each preset, from the shapes).

Memory is read with ``getrusage(RUSAGE_SELF).ru_maxrss``, the high-water mark of one process, so each
measurement runs in its own fresh subprocess: this same module, called with ``--worker SPEC.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import ROOT, SUITE_DIR, interleaved_medians, seconds, write_json
from simplenet_edu import SimpleNet, SimpleNetConfig
from simplenet_edu import data as data_lib
from simplenet_edu.evaluation.evaluator import evaluate
from simplenet_edu.simplenet.anomaly_generator import GaussianNoise
from simplenet_edu.simplenet.training import make_optimizers, train_step
from simplenet_edu.simplenet.variants import make_loss
from simplenet_edu.stages.backbones import backbone_info

HAZELNUT = SUITE_DIR / "hazelnut_toy"  # override with $SIMPLENET_EDU_HAZELNUT

IMAGES_PER_BATCH = 8   # the official code trains on 8 images per step; predict's default batch, too
MB = 1e6               # decimal megabytes, so that 36 x 36 x 1536 x 4 bytes reads 7.96 MB
CACHE_BUDGET_BYTES = 8e9

TARGETS = {  # the project's speed targets; they are stated for the default configuration
    "predict_vs_backbone_ratio": ("<=", 1.2),
    "head_flops_fraction_of_matmul": (">=", 0.5),
    "train_and_evaluate_seconds": ("<=", 60.0),  # on hazelnut_toy only
}


# --------------------------------------------------------------------------------------------------
# Settings: the full run, --quick and --smoke
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """How big a benchmark run is."""

    name: str
    config: SimpleNetConfig
    scaling_sizes: tuple[int, ...]        # training images per scaling row
    repeats: int                          # short timings: median of this many
    epoch_repeats: int                    # whole epochs and backbone passes: median of this many
    max_train: int | None = None          # cap on the training images of a data set
    real_data: bool = True                # measure on hazelnut_toy too, when it is present
    demo: dict = field(default_factory=dict)  # make_demo_dataset arguments


SETTINGS = {
    "full": Setting("full", SimpleNetConfig(), (25, 50, 100, 200), repeats=9, epoch_repeats=2),
    "quick": Setting("quick", SimpleNetConfig.quick(), (25, 50), repeats=5, epoch_repeats=1),
    # Seconds, not minutes: a test that the script runs end to end, not a measurement.
    "smoke": Setting(
        "smoke", SimpleNetConfig.quick(image_size=64, epochs=1, batch_size=512), (4, 8),
        repeats=1, epoch_repeats=1, max_train=8, real_data=False,
        demo=dict(image_size=64, n_train=8, n_test_good=4, n_test_per_defect=1),
    ),
}


# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def cache_mb_per_image(config: SimpleNetConfig, dtype: str | None = None) -> float:
    """Size of one image's cached patch features, from the shapes: ``(side / stride)^2 x D x bytes``."""
    side = config.crop_size or config.image_size
    stride = backbone_info(config.backbone)["strides"][0]
    itemsize = torch.finfo(getattr(torch, dtype or config.cache_dtype)).bits // 8
    return (side // stride) ** 2 * config.target_embed_dim * itemsize / MB


# --------------------------------------------------------------------------------------------------
# The two training epochs compared, and the FLOPs of a training step
# --------------------------------------------------------------------------------------------------


def optimizers_like_fit(model: SimpleNet) -> list[torch.optim.Optimizer]:
    """The optimisers ``SimpleNet.fit`` trains with (none for a part without parameters)."""
    return make_optimizers(model.config, model.adaptor, model.discriminator)


def cached_epoch(model, bank, optimizers, generator, shuffle: torch.Generator) -> None:
    """One pass over cached patch features ``bank [N, D]``, as ``SimpleNet.fit`` trains."""
    order = torch.randperm(len(bank), generator=shuffle).to(bank.device)
    for idx in order.split(model.config.batch_size):
        if len(idx) > 1:  # BatchNorm needs two samples
            train_step(model.adaptor, generator, model.discriminator, optimizers, bank[idx].float(),
                       make_loss(model.config))


def recompute_epoch(model, images, optimizers, generator, shuffle: torch.Generator) -> None:
    """One pass as the official code trains: every batch of 8 images goes through the frozen
    backbone and aggregation again before its update, though their features never change."""
    order = torch.randperm(len(images), generator=shuffle)
    for idx in order.split(IMAGES_PER_BATCH):
        features = model.extractor(images[idx].to(model.device))[0].flatten(0, 1)   # [8*h*w, D]
        train_step(model.adaptor, generator, model.discriminator, optimizers, features, make_loss(model.config))


def backbone_pass(model, images) -> None:
    """The frozen backbone alone over ``images``, in batches of 8: the floor any training pays once."""
    with torch.no_grad():
        for start in range(0, len(images), IMAGES_PER_BATCH):
            model.extractor.backbone(images[start:start + IMAGES_PER_BATCH].to(model.device))


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def step_matmuls(model, n: int) -> list[tuple[int, int, int]]:
    """``(rows, in, out)`` of every matmul-shaped layer in one ``train_step`` on ``n`` features:
    the adaptor sees the ``n`` normal features, the discriminator ``2n`` (normal and noised)."""
    return ([(n, layer.in_features, layer.out_features) for layer in linears(model.adaptor)]
            + [(2 * n, layer.in_features, layer.out_features) for layer in linears(model.discriminator)])


def step_flops(shapes: list[tuple[int, int, int]]) -> int:
    """2*M*K*N per matmul, x3 for the forward pass and the two backward matmuls (input and weight
    gradients). Autograd skips the adaptor's input gradient, so this slightly flatters the head."""
    return sum(3 * 2 * rows * k * n for rows, k, n in shapes)


def epoch_batches(n_features: int, batch_size: int) -> list[int]:
    sizes = [batch_size] * (n_features // batch_size) + [n_features % batch_size]
    return [size for size in sizes if size > 1]


class PlainMatmulEpoch:
    """The matmuls of one cached epoch and nothing else, as plain ``torch.mm`` calls: forward
    ``x @ W``, input gradient ``g @ W.T`` and weight gradient ``x.T @ g`` for every layer and step.
    Its FLOP rate is what this machine can reach on these shapes: the head's ceiling."""

    def __init__(self, model, batches: list[int], seed: int):
        self.plan = [step_matmuls(model, size) for size in batches]
        widest = max(self.plan, key=step_flops)
        generator = torch.Generator().manual_seed(seed)
        # One set of operands per layer, sized for the largest step and sliced for smaller ones.
        self.operands = [
            (torch.randn(rows, k, generator=generator), torch.randn(k, n, generator=generator),
             torch.randn(rows, n, generator=generator))
            for rows, k, n in widest
        ]
        self.flops = sum(step_flops(shapes) for shapes in self.plan)

    def __call__(self) -> None:
        for shapes in self.plan:
            for (rows, _, _), (x, w, g) in zip(shapes, self.operands):
                torch.mm(x[:rows], w)
                torch.mm(g[:rows], w.t())
                torch.mm(x[:rows].t(), g[:rows])


# --------------------------------------------------------------------------------------------------
# Workers: each runs in a fresh process, so that its peak memory is its own
# --------------------------------------------------------------------------------------------------


def load_train_images(root: Path, config: SimpleNetConfig, max_images: int | None) -> torch.Tensor:
    folder = root / "train" / "good" if (root / "train" / "good").is_dir() else root
    paths = data_lib.list_images(folder)[:max_images]
    return torch.stack([data_lib.load_image(p, config.image_size, config.crop_size) for p in paths])


def batch_of_eight(images: torch.Tensor) -> torch.Tensor:
    """The first 8 images, repeated when there are fewer."""
    return images[torch.arange(IMAGES_PER_BATCH) % len(images)]


def fit_worker(spec: dict) -> dict:
    """Train, then time the two kinds of epoch, the plain matmuls and the backbone pass."""
    config = SimpleNetConfig.from_dict(spec["config"])
    model = SimpleNet(config)
    start = time.perf_counter()
    images = load_train_images(Path(spec["root"]), config, spec["max_train"])
    seconds_load = time.perf_counter() - start

    rss_before = peak_rss_mb()
    seconds_fit = seconds(lambda: model.fit(images, progress=False))
    peak_rss = peak_rss_mb()   # read now: the timings below hold a second feature cache
    model.save(spec["checkpoint"])

    # Both epochs run over all training images with the model's trained heads and sigma.
    bank = model.extract(images).flatten(0, 1).to(getattr(torch, config.cache_dtype))
    generator = GaussianNoise(model.sigma, config.mix_noise)
    optimizers = optimizers_like_fit(model)
    shuffle = torch.Generator().manual_seed(config.seed)
    matmuls = PlainMatmulEpoch(model, epoch_batches(len(bank), config.batch_size), config.seed)
    model.adaptor.train()
    model.discriminator.train()
    # Warm-up: first calls allocate and pick kernels; one step of each kind is enough.
    train_step(model.adaptor, generator, model.discriminator, optimizers, bank[:IMAGES_PER_BATCH].float(),
               make_loss(config))
    backbone_pass(model, images[:IMAGES_PER_BATCH])
    times = interleaved_medians({
        "cached": lambda: cached_epoch(model, bank, optimizers, generator, shuffle),
        "matmul": matmuls,
        "recompute": lambda: recompute_epoch(model, images, optimizers, generator, shuffle),
        "backbone": lambda: backbone_pass(model, images),
    }, spec["epoch_repeats"])

    head_gflops = matmuls.flops / times["cached"] / 1e9
    matmul_gflops = matmuls.flops / times["matmul"] / 1e9
    return {
        "n_train_images": len(images),
        "seconds_load_train": seconds_load,
        "seconds_fit": seconds_fit,
        "seconds_fit_features": model.timings["seconds_features"],
        "seconds_fit_train": model.timings["seconds_train"],
        "seconds_fit_epoch_mean": model.timings["seconds_train"] / model.history[-1]["epoch"],  # per pass
        "seconds_cached_epoch": times["cached"],
        "seconds_recompute_epoch": times["recompute"],
        "cached_vs_recompute_epoch_ratio": times["cached"] / times["recompute"],
        "seconds_backbone_pass": times["backbone"],
        "fit_vs_backbone_pass_ratio": seconds_fit / times["backbone"],
        "head_gflop_per_epoch": matmuls.flops / 1e9,
        "seconds_matmul_epoch": times["matmul"],
        "head_gflops": head_gflops,
        "matmul_gflops": matmul_gflops,
        "head_flops_fraction_of_matmul": head_gflops / matmul_gflops,
        "cache_mb_measured": bank.numel() * bank.element_size() / MB / len(images),
        "rss_mb_before_fit": rss_before,
        "peak_rss_mb_fit": peak_rss,
    }


def predict_worker(spec: dict) -> dict:
    """Score the test images (peak memory), time predict against the bare backbone, evaluate."""
    model = SimpleNet.load(spec["checkpoint"])
    config = model.config
    root = Path(spec["root"])
    test = data_lib.stack(data_lib.MVTecDataset(root, "test", config.image_size, config.crop_size), progress=False)
    images = test["images"]

    rss_before = peak_rss_mb()
    seconds_predict = seconds(lambda: model.predict(images, batch_size=IMAGES_PER_BATCH))
    peak_rss = peak_rss_mb()

    batch = batch_of_eight(images)
    model.predict(batch)  # warm-up
    backbone_pass(model, batch)
    times = interleaved_medians({
        "predict": lambda: model.predict(batch, batch_size=IMAGES_PER_BATCH),
        "backbone": lambda: backbone_pass(model, batch),
    }, spec["repeats"])

    start = time.perf_counter()
    result = evaluate(model, root, progress=False)
    seconds_evaluate = time.perf_counter() - start
    return {
        "n_test_images": len(images),
        "seconds_predict_test_set": seconds_predict,
        "ms_per_image_predict": 1000 * times["predict"] / IMAGES_PER_BATCH,
        "ms_per_image_backbone": 1000 * times["backbone"] / IMAGES_PER_BATCH,
        "predict_vs_backbone_ratio": times["predict"] / times["backbone"],
        "seconds_evaluate": seconds_evaluate,
        "image_auroc": result.metrics["image_auroc"],
        "pixel_auroc": result.metrics["pixel_auroc"],
        "rss_mb_before_predict": rss_before,
        "peak_rss_mb_predict": peak_rss,
    }


def scaling_worker(spec: dict) -> dict:
    """Fit on the first ``n`` images of a synthetic set: seconds and peak memory."""
    config = SimpleNetConfig.from_dict(spec["config"])
    model = SimpleNet(config)
    images = load_train_images(Path(spec["root"]), config, spec["n_images"])
    rss_before = peak_rss_mb()
    seconds_fit = seconds(lambda: model.fit(images, progress=False))
    return {
        "n_images": len(images),
        "fit_seconds": seconds_fit,
        "fit_seconds_features": model.timings["seconds_features"],
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb_before_fit": rss_before,
        "cache_mb": len(images) * cache_mb_per_image(config),
    }


WORKERS = {"fit": fit_worker, "predict": predict_worker, "scaling": scaling_worker}


def run_worker(kind: str, spec: dict, scratch: Path) -> dict:
    """Run one worker in a fresh Python process and return what it measured."""
    spec_path = scratch / f"{kind}-{time.monotonic_ns()}.json"
    result_path = spec_path.with_suffix(".result.json")
    spec_path.write_text(json.dumps({**spec, "kind": kind, "result": str(result_path)}))
    # The worker's own output (warnings, errors) goes to our stderr: stdout is kept for the table.
    subprocess.run([sys.executable, "-m", "benchmarks.run", "--worker", str(spec_path)],
                   check=True, stdout=sys.stderr, cwd=ROOT)
    return json.loads(result_path.read_text())


def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = WORKERS[spec["kind"]](spec)
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def datasets(setting: Setting, data_dir: Path, seed: int) -> dict[str, Path | str]:
    """The data sets to measure on: a path, or the reason one is skipped."""
    demo = data_lib.make_demo_dataset(data_dir / f"demo-{setting.name}", "brick", seed=seed, **setting.demo)
    hazelnut = Path(os.environ.get("SIMPLENET_EDU_HAZELNUT") or HAZELNUT)
    if not setting.real_data:
        return {"demo": demo, "hazelnut_toy": f"skipped in the {setting.name} setting"}
    if (hazelnut / "train" / "good").is_dir():
        return {"demo": demo, "hazelnut_toy": hazelnut}
    return {"demo": demo, "hazelnut_toy": f"skipped: not found at {hazelnut} (set SIMPLENET_EDU_HAZELNUT)"}


def measure_dataset(name: str, root: Path, setting: Setting, config: SimpleNetConfig, scratch: Path) -> dict:
    spec = {"root": str(root), "config": config.to_dict(), "checkpoint": str(scratch / f"{name}.pt"),
            "max_train": setting.max_train, "repeats": setting.repeats, "epoch_repeats": setting.epoch_repeats}
    log(f"{name}: fit, epochs and backbone pass")
    fitted = run_worker("fit", spec, scratch)
    log(f"{name}: predict and evaluate")
    predicted = run_worker("predict", spec, scratch)
    combined = {**fitted, **predicted}
    # What a user of `simplenet-edu evaluate` waits for: read the images, fit, score the test set.
    combined["train_and_evaluate_seconds"] = fitted["seconds_load_train"] + fitted["seconds_fit"] + predicted["seconds_evaluate"]
    return combined


def measure_scaling(setting: Setting, config: SimpleNetConfig, data_dir: Path, seed: int, scratch: Path) -> dict:
    """Fit time and memory against the number of training images. One epoch and no hold-out, so
    that the four fits take minutes, not an hour: ``fit_seconds`` is feature extraction plus one pass,
    both linear in the number of images; the cache is exactly ``n x cache_mb_per_image``."""
    scaling_config = dataclasses.replace(config, epochs=1, holdout_fraction=0.0)
    side = setting.demo.get("image_size", 256)
    root = data_lib.make_demo_dataset(
        data_dir / f"scaling-{setting.name}", "gravel", seed=seed, image_size=side,
        n_train=max(setting.scaling_sizes), n_test_good=0, n_test_per_defect=0,
    )
    rows = []
    for n in setting.scaling_sizes:
        log(f"scaling: fit on {n} images")
        spec = {"root": str(root), "config": scaling_config.to_dict(), "n_images": n}
        rows.append(run_worker("scaling", spec, scratch))
    return {"config_overrides": {"epochs": 1, "holdout_fraction": 0.0}, "rows": rows}


def cache_table(config: SimpleNetConfig) -> dict:
    """Feature-cache megabytes per training image, per preset and cache dtype, from the shapes."""
    presets = {"default": SimpleNetConfig(), "quick": SimpleNetConfig.quick(), "paper": SimpleNetConfig.paper(),
               "this_run": config}
    return {name: {dtype: cache_mb_per_image(preset, dtype) for dtype in ("float32", "float16")}
            for name, preset in presets.items()}


def targets(results: dict) -> list[dict]:
    rows = []
    for name, figures in results["datasets"].items():
        for key, (sense, bound) in TARGETS.items():
            if key not in figures or (key == "train_and_evaluate_seconds" and name != "hazelnut_toy"):
                continue
            value = figures[key]
            met = value <= bound if sense == "<=" else value >= bound
            rows.append({"dataset": name, "figure": key, "value": value, "target": f"{sense} {bound:g}", "met": met})
    return rows


def machine() -> dict:
    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }


def log(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# The Markdown report
# --------------------------------------------------------------------------------------------------

DATASET_ROWS = [  # (key, label, format)
    ("n_train_images", "training images", "{:d}"),
    ("seconds_cached_epoch", "cached epoch (s)", "{:.2f}"),
    ("seconds_recompute_epoch", "recompute epoch, official style (s)", "{:.2f}"),
    ("cached_vs_recompute_epoch_ratio", "**cached / recompute epoch**", "{:.3f}"),
    ("seconds_fit", "fit (s)", "{:.1f}"),
    ("seconds_fit_features", "  of which feature extraction (s)", "{:.1f}"),
    ("seconds_fit_train", "  of which training (s)", "{:.1f}"),
    ("seconds_fit_epoch_mean", "  mean epoch inside fit (s)", "{:.2f}"),
    ("seconds_backbone_pass", "backbone pass over training images (s)", "{:.2f}"),
    ("fit_vs_backbone_pass_ratio", "**fit / backbone pass**", "{:.1f}"),
    ("head_gflop_per_epoch", "head GFLOP per epoch", "{:.1f}"),
    ("head_gflops", "head GFLOP/s in training", "{:.1f}"),
    ("matmul_gflops", "plain torch.mm GFLOP/s, same shapes", "{:.1f}"),
    ("head_flops_fraction_of_matmul", "**head / matmul FLOP rate**", "{:.2f}"),
    ("ms_per_image_predict", "predict, batch 8 (ms/image)", "{:.1f}"),
    ("ms_per_image_backbone", "bare backbone, batch 8 (ms/image)", "{:.1f}"),
    ("predict_vs_backbone_ratio", "**predict / backbone**", "{:.2f}"),
    ("peak_rss_mb_fit", "**peak RSS of fit (MB)**", "{:.0f}"),
    ("rss_mb_before_fit", "  RSS before fit (MB)", "{:.0f}"),
    ("peak_rss_mb_predict", "**peak RSS of predict (MB)**", "{:.0f}"),
    ("rss_mb_before_predict", "  RSS before predict (MB)", "{:.0f}"),
    ("cache_mb_measured", "feature cache per image, measured (MB)", "{:.3f}"),
    ("n_test_images", "test images", "{:d}"),
    ("seconds_evaluate", "evaluate (s)", "{:.1f}"),
    ("train_and_evaluate_seconds", "**load + fit + evaluate (s)**", "{:.1f}"),
    ("image_auroc", "image AUROC", "{:.3f}"),
    ("pixel_auroc", "pixel AUROC", "{:.3f}"),
]


def markdown(results: dict) -> str:
    names = list(results["datasets"])
    lines = [f"## simplenet-edu benchmarks: {results['setting']} "
             f"(torch {results['machine']['torch']}, {results['machine']['torch_threads']} threads)", "",
             "| figure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label, fmt in DATASET_ROWS:
        cells = []
        for name in names:
            figures = results["datasets"][name]
            value = figures.get(key) if isinstance(figures, dict) else None
            cells.append("-" if value is None else fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name in names:
        if isinstance(results["datasets"][name], str):
            lines.append(f"\n{name}: {results['datasets'][name]}")

    scaling = results["scaling"]
    lines += ["", f"### scaling (fit with {scaling['config_overrides']})", "",
              "| n_images | fit s | of which features s | peak RSS MB | cache MB |", "|---:|---:|---:|---:|---:|"]
    for row in scaling["rows"]:
        lines.append(f"| {row['n_images']} | {row['fit_seconds']:.1f} | {row['fit_seconds_features']:.1f} "
                     f"| {row['peak_rss_mb']:.0f} | {row['cache_mb']:.1f} |")

    lines += ["", "### feature cache per training image (MB, from the shapes)", "",
              "| preset | float32 | float16 |", "|---|---:|---:|"]
    for preset, sizes in results["cache_mb_per_image"].items():
        lines.append(f"| {preset} | {sizes['float32']:.3f} | {sizes['float16']:.3f} |")
    fit8 = results["paper_images_in_8gb"]
    lines.append(f"\nPaper-preset (288 px) training images whose cache fits in 8 GB: "
                 f"{fit8['float32']} in float32, {fit8['float16']} in float16.")

    lines += ["", "### targets (stated for the default configuration)", "",
              "| data set | figure | value | target | met |", "|---|---|---:|---|---|"]
    for row in results["targets"]:
        lines.append(f"| {row['dataset']} | {row['figure']} | {row['value']:.3g} | {row['target']} "
                     f"| {'yes' if row['met'] else 'no'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="JSON file for the results "
                        "(default: data/benchmark/results-<setting>.json)")
    parser.add_argument("--quick", action="store_true", help="SimpleNetConfig.quick() and fewer scaling rows")
    parser.add_argument("--smoke", action="store_true",
                        help="smaller still (64 px, 8 images, demo set only): checks that the script runs")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "benchmark",
                        help="where the synthetic data sets are written (reused across runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, the data and the shuffles")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one measurement in this process
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)

    setting = SETTINGS["smoke" if args.smoke else "quick" if args.quick else "full"]
    config = dataclasses.replace(setting.config, seed=args.seed, device="cpu")
    output = args.output or ROOT / "data" / "benchmark" / f"results-{setting.name}.json"
    start = time.perf_counter()

    results = {"setting": setting.name, "config": config.to_dict(), "machine": machine(), "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="simplenet-bench-") as scratch:
        for name, root in datasets(setting, args.data_dir, args.seed).items():
            if isinstance(root, str):
                results["datasets"][name] = root
                log(f"{name}: {root}")
                continue
            results["datasets"][name] = measure_dataset(name, root, setting, config, Path(scratch))
        results["scaling"] = measure_scaling(setting, config, args.data_dir, args.seed, Path(scratch))

    results["cache_mb_per_image"] = cache_table(config)
    paper = results["cache_mb_per_image"]["paper"]
    results["paper_images_in_8gb"] = {dtype: math.floor(CACHE_BUDGET_BYTES / MB / mb) for dtype, mb in paper.items()}
    results["targets"] = targets(results)
    results["seconds_total"] = time.perf_counter() - start

    write_json(output, results)
    print(markdown(results))
    print(f"\n{results['seconds_total']:.0f} s in all; JSON written to {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
