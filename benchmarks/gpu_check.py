"""GPU checks of simplenet-edu: the paper preset's speed, bfloat16 against float32, CPU against GPU.

    python -m benchmarks.gpu_check [--device cuda] [--output-dir DIR]     # on a GPU machine
    python -m benchmarks.gpu_check --device cpu --smoke                    # end to end on a CPU, tiny

Usually started by ``benchmarks/gpu_check.sh``, which installs what is missing first. Three checks:

1. **Paper preset speed.** ``SimpleNetConfig.paper(pretrained=False)`` (random Wide-ResNet50 weights:
   there is no internet to fetch ImageNet ones, and speed does not depend on the weights). A short
   ``fit`` on 32 synthetic images gives seconds per pass; ``predict`` at batch 32 gives images/s in
   float32 and with ``amp=True`` (bfloat16 autocast), after a warm-up, with ``cuda.synchronize``.
   The paper reports 77 images/s on an RTX 3080 Ti.
2. **bfloat16 keeps the ranking.** The same model scores the same synthetic normal and anomalous
   test images in float32 and in bfloat16: their image AUROCs must agree within 0.005.
3. **CPU and GPU train alike.** The Lite0 default trains on the demo set on the CPU and on the GPU
   with the same seed; their image scores and AUROCs are compared. They agree closely, not bit for
   bit: the GPU draws its Gaussian noise from another random stream than the CPU's.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--output-dir`` (default ``$OUT``, else
``./gpu_results``) and prints the Markdown. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from simplenet_edu import InputError, SimpleNet, SimpleNetConfig
from simplenet_edu import data as data_lib
from simplenet_edu.evaluation.evaluator import evaluate
from simplenet_edu.evaluation.metrics import image_auroc
from simplenet_edu.utils.atomic import write_text

PAPER_FPS = 77.0            # Liu et al. 2023, RTX 3080 Ti
BF16_AUROC_TOLERANCE = 0.005
PREDICT_BATCH = 32


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(function, n_images: int, device: torch.device, warmup: int, repeats: int) -> float:
    """Throughput of ``function`` (which handles ``n_images``), after ``warmup`` untimed calls.
    The GPU runs asynchronously: synchronise before reading the clock, or it measures the queueing."""
    for _ in range(warmup):
        function()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return n_images * repeats / (time.perf_counter() - start)


def scores_and_labels(model: SimpleNet, root: Path) -> tuple[np.ndarray, np.ndarray]:
    result = evaluate(model, root, progress=False)
    return result.image_scores, result.labels


# --------------------------------------------------------------------------------------------------
# 1 and 2: the paper preset
# --------------------------------------------------------------------------------------------------


def paper_preset(device: torch.device, data_dir: Path, smoke: bool, seed: int) -> dict:
    overrides = dict(pretrained=False, device=str(device), seed=seed, epochs=2 if smoke else 40)
    if smoke:  # a 56 px crop: a 7 x 7 patch grid, seconds on a CPU
        overrides.update(image_size=64, crop_size=56)
    config = SimpleNetConfig.paper(**overrides)
    side = config.image_size
    root = data_lib.make_demo_dataset(
        data_dir / f"paper-{side}", "brick", seed=seed, image_size=side,
        n_train=8 if smoke else 32, n_test_good=4 if smoke else 16, n_test_per_defect=1 if smoke else 4,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random weights": deliberate here
        model = SimpleNet(config)
    fit_start = time.perf_counter()
    model.fit(root, progress=False)
    synchronize(device)
    fit_seconds = time.perf_counter() - fit_start

    test = data_lib.stack(data_lib.MVTecDataset(root, "test", config.image_size, config.crop_size), progress=False)
    batch = test["images"][torch.arange(PREDICT_BATCH) % len(test["images"])]
    warmup, repeats = (1, 2) if smoke else (3, 20)
    speed, scores = {}, {}
    for precision, amp in (("float32", False), ("bfloat16", True)):
        model.config.amp = amp  # read by patch_scores at every call
        speed[precision] = images_per_second(
            lambda: model.predict(batch, batch_size=PREDICT_BATCH), PREDICT_BATCH, device, warmup, repeats)
        scores[precision], labels = scores_and_labels(model, root)
    model.config.amp = False

    with torch.no_grad():
        backbone_fps = images_per_second(
            lambda: model.extractor.backbone(batch.to(device)), PREDICT_BATCH, device, warmup, repeats)
    aurocs = {precision: image_auroc(labels, values) for precision, values in scores.items()}
    return {
        "config": config.to_dict(),
        "n_train_images": len(data_lib.list_images(root / "train" / "good")),
        "fit_seconds": fit_seconds,
        "fit_seconds_features": model.timings["seconds_features"],
        "fit_seconds_per_pass": model.timings["seconds_train"] / config.epochs,
        "predict_images_per_s_float32": speed["float32"],
        "predict_images_per_s_bfloat16": speed["bfloat16"],
        "backbone_images_per_s_float32": backbone_fps,
        "image_auroc_float32": aurocs["float32"],
        "image_auroc_bfloat16": aurocs["bfloat16"],
        "image_auroc_difference": abs(aurocs["float32"] - aurocs["bfloat16"]),
        "max_abs_score_difference": float(np.max(np.abs(scores["float32"] - scores["bfloat16"]))),
        "score_std_float32": float(np.std(scores["float32"])),
        "n_test_images": len(labels),
    }


# --------------------------------------------------------------------------------------------------
# 3: the Lite0 default on the CPU and on the GPU
# --------------------------------------------------------------------------------------------------


def lite0_config(smoke: bool, seed: int) -> tuple[SimpleNetConfig, str]:
    """The default configuration; random weights (with a note) if the weights package is missing."""
    config = SimpleNetConfig.quick(image_size=64, epochs=2) if smoke else SimpleNetConfig()
    config = dataclasses.replace(config, seed=seed)
    try:
        from simplenet_edu.stages.backbones import lite0_weights_path

        lite0_weights_path()
        return config, "ImageNet weights"
    except InputError as error:
        return dataclasses.replace(config, pretrained=False), f"random weights ({error})"


def cpu_against_gpu(device: torch.device, data_dir: Path, smoke: bool, seed: int) -> dict:
    config, weights = lite0_config(smoke, seed)
    demo = dict(image_size=64, n_train=8, n_test_good=4, n_test_per_defect=1) if smoke else {}
    root = data_lib.make_demo_dataset(data_dir / f"demo-{config.image_size}", "brick", seed=seed, **demo)
    runs = {}
    for name, where in (("cpu", "cpu"), ("device", str(device))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SimpleNet(dataclasses.replace(config, device=where))
        start = time.perf_counter()
        model.fit(root, progress=False)
        synchronize(model.device)
        fit_seconds = time.perf_counter() - start
        scores, labels = scores_and_labels(model, root)
        runs[name] = {"fit_seconds": fit_seconds, "scores": scores, "auroc": image_auroc(labels, scores),
                      "sigma": model.sigma, "final_loss": model.history[-1]["loss"]}
    cpu, gpu = runs["cpu"], runs["device"]
    return {
        "weights": weights,
        "device": str(device),
        "n_test_images": len(cpu["scores"]),
        "fit_seconds_cpu": cpu["fit_seconds"],
        "fit_seconds_device": gpu["fit_seconds"],
        "image_auroc_cpu": cpu["auroc"],
        "image_auroc_device": gpu["auroc"],
        "image_auroc_difference": abs(cpu["auroc"] - gpu["auroc"]),
        "max_abs_score_difference": float(np.max(np.abs(cpu["scores"] - gpu["scores"]))),
        "score_std_cpu": float(np.std(cpu["scores"])),
        "score_correlation": float(np.corrcoef(cpu["scores"], gpu["scores"])[0, 1]),
        "sigma_cpu": cpu["sigma"], "sigma_device": gpu["sigma"],
        "final_loss_cpu": cpu["final_loss"], "final_loss_device": gpu["final_loss"],
    }


# --------------------------------------------------------------------------------------------------


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


def checks(results: dict) -> dict[str, bool]:
    paper = results["paper_preset"]
    return {
        f"bf16 image AUROC within {BF16_AUROC_TOLERANCE} of float32": paper["image_auroc_difference"] <= BF16_AUROC_TOLERANCE,
        f"paper preset predict >= {PAPER_FPS:g} images/s (float32, batch {PREDICT_BATCH})":
            paper["predict_images_per_s_float32"] >= PAPER_FPS,
    }


def markdown(results: dict) -> str:
    lines = [f"## simplenet-edu GPU check ({results['machine'].get('gpu', results['machine']['device'])}, "
             f"torch {results['machine']['torch']}{', smoke' if results['smoke'] else ''})", ""]
    for section in ("paper_preset", "lite0_cpu_vs_device"):
        lines += [f"### {section}", "", "| figure | value |", "|---|---:|"]
        for key, value in results[section].items():
            if key == "config":
                continue
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {key} | {shown} |")
        lines.append("")
    lines += ["### checks", "", "| check | passed |", "|---|---|"]
    lines += [f"| {name} | {'yes' if passed else 'NO'} |" for name, passed in results["checks"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script end to end in seconds")
    parser.add_argument("--output-dir", type=Path, default=Path(os.environ.get("OUT") or "gpu_results"))
    parser.add_argument("--data-dir", type=Path, help="where the synthetic data sets are written (default: $TMPDIR/simplenet-gpu-check)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu --smoke to check the script", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    # Data stays out of $OUT, so that only the results come back from a device machine.
    data_dir = args.data_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "simplenet-gpu-check"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    results = {"smoke": args.smoke, "machine": machine(device)}
    print("[gpu_check] paper preset: fit, predict float32 / bfloat16", file=sys.stderr, flush=True)
    results["paper_preset"] = paper_preset(device, data_dir, args.smoke, args.seed)
    print("[gpu_check] Lite0 default: CPU against device", file=sys.stderr, flush=True)
    results["lite0_cpu_vs_device"] = cpu_against_gpu(device, data_dir, args.smoke, args.seed)
    results["checks"] = checks(results)
    results["seconds_total"] = time.perf_counter() - start

    report = markdown(results)
    write_text(args.output_dir / "gpu_check.json", json.dumps(results, indent=2) + "\n")
    write_text(args.output_dir / "gpu_check.md", report + "\n")
    print(report)
    print(f"\n{results['seconds_total']:.0f} s; written to {args.output_dir}/gpu_check.{{json,md}}")
    return 0 if all(results["checks"].values()) or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
