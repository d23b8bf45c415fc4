"""How SuperSimpleNet's 300-epoch schedule fits a CPU budget, and what the CPU default costs.

Measured in one process, interleaved (a, b, c, a, b, c, ...) and reduced to medians, so that load from
elsewhere slows every configuration alike: the seconds of one training step of

- SimpleNet's CPU default (``SimpleNetConfig()``: 512 cached patch features per step),
- SuperSimpleNet's CPU default (``SuperSimpleNetConfig()``),
- SuperSimpleNet's paper configuration (``SuperSimpleNetConfig.paper()``: Wide-ResNet50 with random
  weights, since only the shapes matter for time; measured on 2 images per step and scaled linearly to
  its batch of 32, the heads being convolutions whose cost grows with the images),

and one backbone forward per image of each backbone. From those, per data set of the development
suite (its training images less the 10% held out), the training time of: SimpleNet's default, the
SuperSimpleNet default, the paper's schedule (300 epochs of ``ceil(N / 32)`` steps) on cached features,
and the same schedule recomputing the backbone on every step as anomalib does.

    python -m benchmarks.supersimplenet_budget [--threads 1] [--repeats 5] [--output results/supersimplenet_budget]

The machine is shared: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from benchmarks.common import SUITE_DIR, command, interleaved_medians, made_by, write_md_json
from simplenet_edu.data import list_images
from simplenet_edu.simplenet import variants
from simplenet_edu.simplenet.config import SimpleNetConfig
from simplenet_edu.simplenet.model import SimpleNet
from simplenet_edu.simplenet.training import make_optimizers, train_step
from simplenet_edu.supersimplenet import training as ssn_training
from simplenet_edu.supersimplenet.anomaly_generator import PerlinAnomalyGenerator
from simplenet_edu.supersimplenet.config import SuperSimpleNetConfig
from simplenet_edu.supersimplenet.loss import SuperSimpleNetLoss
from simplenet_edu.supersimplenet.model import SuperSimpleNet


def simplenet_step(config):
    """A closure running one SimpleNet training step on random cached features."""
    model = SimpleNet(config)
    model.generator = variants.make_generator(config, 1.0)
    optimizers = make_optimizers(config, model.adaptor, model.discriminator)
    loss = variants.make_loss(config)
    batch = torch.randn(config.batch_size, config.target_embed_dim)
    model.train()
    return lambda: train_step(model.adaptor, model.generator, model.discriminator, optimizers, batch, loss)


def ssn_step(config, images: int):
    """A closure running one SuperSimpleNet training step on ``images`` cached images (doubled inside)."""
    model = SuperSimpleNet(config)
    side = config.image_size
    maps = [m.detach() for m in model.backbone(torch.rand(images, 3, side, side))]
    generator = PerlinAnomalyGenerator(1.0, config.perlin_threshold, config.zero_prob)
    optimizer = torch.optim.AdamW(list(model.adaptor.parameters()) + list(model.head.parameters()))
    loss = SuperSimpleNetLoss()
    grid = model.grid()
    cells, labels = torch.zeros(images, *grid), torch.zeros(images)
    model.train()
    return lambda: ssn_training.train_step(model.adaptor, generator, model.head, loss, optimizer,
                                           model.features(maps), cells, labels)


def backbone_pass(config, images: int = 2):
    """A closure running the backbone alone on ``images`` random images."""
    model = SuperSimpleNet(config)
    x = torch.rand(images, 3, config.image_size, config.image_size)

    def run():
        with torch.no_grad():
            model.backbone(x)
    return run


def suite_sizes() -> dict[str, int]:
    """Training images per set of the development suite, less the 10% held out (two made-up sizes
    where the suite is absent)."""
    sizes = {}
    for folder in sorted(SUITE_DIR.iterdir()) if SUITE_DIR.is_dir() else []:
        good = folder / "train" / "good"
        if good.is_dir():
            n = len(list_images(good))
            sizes[folder.name] = n - max(1, round(0.1 * n))
    return sizes or {"(25 images)": 25, "(270 images)": 270}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", help="writes OUTPUT.md and OUTPUT.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script runs")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    simple_cfg = SimpleNetConfig(device="cpu")
    ssn_cfg = SuperSimpleNetConfig(device="cpu")
    paper_cfg = SuperSimpleNetConfig.paper(device="cpu", pretrained=False)
    paper_images = 2
    if args.smoke:
        simple_cfg = SimpleNetConfig(device="cpu", image_size=64, batch_size=64)
        ssn_cfg = SuperSimpleNetConfig.quick(device="cpu", image_size=64)
        paper_cfg = SuperSimpleNetConfig.paper(device="cpu", pretrained=False, image_size=64, seg_hidden=64,
                                               cls_channels=8)
        paper_images = 1
    runs = {
        "simplenet_step": simplenet_step(simple_cfg),
        "ssn_default_step": ssn_step(ssn_cfg, ssn_cfg.batch_size),
        "ssn_paper_step_2_images": ssn_step(paper_cfg, paper_images),
        "lite0_backbone_2_images": backbone_pass(ssn_cfg),
        "wrn50_backbone_2_images": backbone_pass(paper_cfg),
    }
    median = interleaved_medians(runs, args.repeats, warmup=True)
    paper_per_image = median["ssn_paper_step_2_images"] / paper_images
    wrn_per_image = median["wrn50_backbone_2_images"] / 2

    rows = []
    for name, n in suite_sizes().items():
        simple_s = simple_cfg.steps * median["simplenet_step"] if simple_cfg.epochs is None else float("nan")
        ssn_s = (ssn_cfg.steps if ssn_cfg.epochs is None else ssn_cfg.epochs * math.ceil(n / ssn_cfg.batch_size)) \
            * median["ssn_default_step"]
        per_epoch = math.ceil(n / paper_cfg.batch_size)
        paper_cached = paper_cfg.epochs * n * paper_per_image          # every image once per epoch
        paper_recompute = paper_cached + paper_cfg.epochs * n * wrn_per_image
        rows.append({"set": name, "train_images": n, "paper_steps": paper_cfg.epochs * per_epoch,
                     "simplenet_default_s": simple_s, "ssn_default_s": ssn_s,
                     "ssn_over_simplenet": ssn_s / simple_s, "paper_cached_h": paper_cached / 3600,
                     "paper_recompute_h": paper_recompute / 3600,
                     "paper_epochs_in_ssn_default_time": ssn_s / (n * paper_per_image)})
    recorded = command("supersimplenet_budget", argv)
    out = {"command": recorded, "threads": args.threads, "repeats": args.repeats, "median_seconds": median,
           "simplenet_config": simple_cfg.to_dict(), "ssn_config": ssn_cfg.to_dict(), "paper_config": paper_cfg.to_dict(),
           "rows": rows}
    lines = ["# SuperSimpleNet's training budget on this CPU", "",
             f"{made_by(recorded)} ({args.threads} torch thread(s), medians of {args.repeats} interleaved repeats; a shared machine: "
             "read the ratios).", "",
             "| one step of | seconds |", "|---|---|",
             f"| SimpleNet default ({simple_cfg.batch_size} patches) | {median['simplenet_step']:.3f} |",
             f"| SuperSimpleNet default ({ssn_cfg.batch_size} images, doubled; grid {ssn_cfg.upscale}x) | "
             f"{median['ssn_default_step']:.3f} |",
             f"| SuperSimpleNet paper, per image (WRN50, 64 x 64 x 1536, heads 1024 / 128) | {paper_per_image:.3f} |",
             f"| backbone forward per image: Lite0 / WRN50 | {median['lite0_backbone_2_images'] / 2:.3f} / "
             f"{wrn_per_image:.3f} |", "",
             "| set | train images | SimpleNet default s | SSN default s | ratio | paper schedule, cached (h) | "
             "paper schedule, backbone every step (h) | paper epochs in the SSN default's time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['train_images']} | {r['simplenet_default_s']:.1f} | {r['ssn_default_s']:.1f} | "
                     f"{r['ssn_over_simplenet']:.2f} | {r['paper_cached_h']:.1f} | {r['paper_recompute_h']:.1f} | "
                     f"{r['paper_epochs_in_ssn_default_time']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        write_md_json(args.output, text, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
