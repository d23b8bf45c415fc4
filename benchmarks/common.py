"""What the benchmark scripts share, in one place.

- where things are: the repository, ``results/``, the development suite's folder and its sets;
- the commands: how a script names itself in the files it writes, and the real ``simplenet-edu``
  command line run once in a fresh process;
- timings taken in turns and reduced to medians (why: ``benchmarks/README.md``);
- mean ± std over seeds, always the sample standard deviation
  (:func:`simplenet_edu.utils.stats.mean_std`), and the note that says so above every table;
- results files, each written whole or not at all (:mod:`simplenet_edu.utils.atomic`);
- the sweeps' pieces: recipes from ``--grid`` axes, every set's features extracted once and cached,
  and the sweep table's header and rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from simplenet_edu import data as data_lib
from simplenet_edu.utils.atomic import atomic_path, write_text
from simplenet_edu.utils.stats import MEAN_STD_NOTE, format_mean_std, mean_std

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SUITE_DIR = ROOT.parent / "shared" / "data"       # the development suite's folder (every script's --suite)
SUITE = ("hazelnut_toy", "metal_plate", "cookie", "solar_cell")
DEMO = ("brick", "gravel", "grass")               # painted by make_demo_dataset, always available
SWEEP_CACHE = ROOT / "data" / "cache" / "sweep"


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def command(script: str, argv: list[str] | None = None) -> str:
    """How ``python -m benchmarks.SCRIPT`` was called (``argv`` default: this process's arguments)."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", f"benchmarks.{script}", *argv])


def as_module(recorded: str) -> str:
    """A recorded ``python benchmarks/NAME.py ARGS`` as the module command ``python -m benchmarks.NAME ARGS``
    (other commands unchanged)."""
    return re.sub(r"^python benchmarks/(\w+)\.py\b", r"python -m benchmarks.\1", recorded.strip())


def quoted(recorded: str) -> str:
    """A recorded command in backquotes, followed by its module form where that differs."""
    recorded = recorded.strip()
    module = as_module(recorded)
    return f"`{recorded}`" + ("" if module == recorded else f" (from the repository root: `{module}`)")


def made_by(recorded: str) -> str:
    """``Made by `COMMAND` `` for a results file's header (:func:`quoted`)."""
    return f"Made by {quoted(recorded)}"


def cli(*args: str) -> list[str]:
    """The argv of ``simplenet-edu --quiet ARGS`` in a fresh interpreter of this Python."""
    return [sys.executable, "-m", "simplenet_edu", "--quiet", *args]


def run_evaluate(data: Path, seed: int, extra: list[str], tree: Path | None = None) -> dict:
    """One ``simplenet-edu evaluate`` in a fresh process: its JSON report plus ``seed`` and ``wall_seconds``
    (what a user waits for: start-up, data check, features, training, scoring, metrics). ``tree``: run
    the package of another checkout instead (its ``simplenet_edu/`` first on the path), to time the code
    of another commit beside this one."""
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "result.json"
        argv = cli("evaluate", "--data", str(data), "--seed", str(seed), "--output", str(output), *extra)
        env = None if tree is None else {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=None if tree is None else tree)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
        report = json.loads(output.read_text())
    return {"seed": seed, "wall_seconds": wall, **report}


# --------------------------------------------------------------------------------------------------
# The development suite
# --------------------------------------------------------------------------------------------------


def find_sets(suite: Path = SUITE_DIR, demo: bool = True,
              names: list[str] | None = None) -> tuple[dict[str, Path], list[str]]:
    """``({name: folder}, [skip messages])``: the suite's sets found under ``suite``, then (``demo``) the
    three demo textures, painted under ``data/demo`` on first use; ``names`` keeps only those."""
    sets, skipped = {}, []
    for name in SUITE:
        folder = Path(suite) / name
        if (folder / "train" / "good").is_dir():
            sets[name] = folder
        else:
            skipped.append(f"{name}: skipped, {folder} not found")
    if demo:
        for name in DEMO:
            sets[name] = data_lib.make_demo_dataset(ROOT / "data" / "demo", name)
    if names:
        sets = {name: folder for name, folder in sets.items() if name in names}
    return sets, skipped


def has_masks(folder: Path) -> bool:
    """Whether a set has pixel masks (``ground_truth/``), and so pixel AUROC and AUPRO."""
    return (Path(folder) / "ground_truth").is_dir()


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def interleaved_medians(functions: dict[str, Callable[[], object]], repeats: int,
                        warmup: bool = False) -> dict[str, float]:
    """Median seconds of each function, run in turns (a, b, a, b, ...): a burst of load from another
    process then slows every side alike instead of biasing their ratio. ``warmup``: one untimed call
    of each first (allocations, kernel choice, optimiser state)."""
    if warmup:
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(seconds(function))
    return {name: statistics.median(values) for name, values in times.items()}


# --------------------------------------------------------------------------------------------------
# Mean ± std over seeds
# --------------------------------------------------------------------------------------------------


def spread(values) -> tuple[float, float | None] | None:
    """``(mean, sample std)`` of one metric over the seeds (std ``None`` for one seed), ``None`` where
    the metric is missing (a set without masks has no pixel AUROC)."""
    mean, std = mean_std(values)
    return None if mean is None else (mean, std)


def cell(value: tuple[float, float | None] | None, digits: int = 3) -> str:
    """``"0.934 ± 0.003"``; ``"0.934"`` for one seed; ``"-"`` for no value."""
    return "-" if value is None else format_mean_std(value[0], value[1], digits)


def seeds_note(seeds) -> str:
    """The line above a table of mean ± std cells: which spread, over which seeds."""
    seeds = list(seeds)
    return (f"{MEAN_STD_NOTE[0].upper()}{MEAN_STD_NOTE[1:]}, over seed{'s' * (len(seeds) > 1)} "
            f"{', '.join(map(str, seeds))} (one seed: no spread).")


# --------------------------------------------------------------------------------------------------
# Results files
# --------------------------------------------------------------------------------------------------


def write_json(path: Path, data: dict, indent: int = 2) -> Path:
    """``data`` as JSON at ``path``, whole or not at all."""
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def write_md_json(output: Path, text: str, data: dict, indent: int = 2) -> None:
    """A benchmark's results: ``OUTPUT.md`` (its printed table) and ``OUTPUT.json`` (every number)."""
    output = Path(output)
    write_text(output.with_suffix(".md"), text)
    write_json(output.with_suffix(".json"), data, indent)


# --------------------------------------------------------------------------------------------------
# Sweeps: recipes, cached features, the table
# --------------------------------------------------------------------------------------------------


def parse_value(text: str):
    """``"3"`` -> 3, ``"1e-4"`` -> 0.0001, ``"none"`` / ``"true"`` / ``"false"`` -> None / True / False."""
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


class SetFeatures:
    """All of one set's images through the frozen backbone once, kept under ``data/cache/sweep/``:
    ``train [N, P, D]`` and ``test [M, P, D]`` (float16), ``train_images [N, 3, H, W]`` (uint8, to
    paint validation sets on), test ``labels [M]``, ``masks [M, H, W]`` (or None), ``defect_types``,
    the patch ``grid``, the input ``size`` and ``resize_shape``."""

    def __init__(self, name: str, root: Path, config, backbone):
        from simplenet_edu.simplenet.model import SimpleNet

        key = f"v2-{name}-{config.backbone}-{config.image_size}-{config.crop_size}-{config.target_embed_dim}" \
              f"-{config.pretrain_embed_dim}" + {True: "-aspect", "auto": "-auto"}.get(config.keep_aspect, "")
        path = SWEEP_CACHE / f"{key}.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=False)
        else:
            model = SimpleNet(dataclasses.replace(config, device="cpu"), backbone=backbone)
            train = model.training_images(root)
            test = data_lib.MVTecDataset(root, "test", model.resize_shape, model.image_shape)
            items = [test[i] for i in range(len(test))]
            cached = {
                "train": model.extract(train, progress=True).half(),
                "train_images": (train * 255).round().to(torch.uint8),
                "test": model.extract(torch.stack([it["image"] for it in items]), progress=True).half(),
                "labels": np.asarray(test.labels, dtype=int),
                "masks": np.stack([it["mask"].numpy() for it in items]).astype(np.uint8) if test.has_masks else None,
                "defect_types": list(test.defect_types),
                "grid": model.grid(), "size": model.image_shape, "resize_shape": model.resize_shape,
            }
            with atomic_path(path) as tmp:
                torch.save(cached, tmp)
        cached.setdefault("resize_shape", cached["size"])         # caches written without keep_aspect
        self.__dict__.update(cached)
        self.painted = {}                                   # (seed, count) -> (ValidationSet, features)

    def validation(self, model, holdout_idx: list[int], seed: int):
        """The painted validation set of this seed's held-out images and its features (built once)."""
        from simplenet_edu.simplenet.validation import painted_validation_set

        key = (seed, model.config.val_images)
        if key not in self.painted:
            images = self.train_images[holdout_idx][: model.config.val_images].float() / 255
            painted = painted_validation_set(images, seed)
            self.painted[key] = (painted, model.extract(painted.images))
        return self.painted[key]


def sweep_summary(results: dict[str, list[dict]]) -> dict:
    """Per set ``{metric: (mean, sample std)}`` over the seeds, the means over the sets of the per-set
    means, and the largest per-set std of image AUROC (``None`` when every set ran one seed)."""
    per_set = {}
    for name, rows in results.items():
        per_set[name] = {}
        for key in ("image_auroc", "pixel_auroc", "aupro", "seconds_train"):
            values = [r[key] for r in rows if key in r]
            if values:
                per_set[name][key] = spread(values)
    means = {key: float(np.mean([s[key][0] for s in per_set.values() if key in s]))
             for key in ("image_auroc", "pixel_auroc", "aupro") if any(key in s for s in per_set.values())}
    stds = [s["image_auroc"][1] for s in per_set.values() if s["image_auroc"][1] is not None]
    return {"per_set": per_set, "mean": means, "worst_image_auroc_std": max(stds) if stds else None}


def sweep_note(seeds) -> str:
    """The line above a sweep table: what its cells and its spread column are."""
    seeds = list(seeds)
    return (f"Per set the mean over seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} of image AUROC / "
            "AUPRO (image AUROC alone without masks), then the means over the sets; worst img std: the largest "
            f"per-set std of image AUROC ({MEAN_STD_NOTE}; one seed: -).")


def sweep_header(names: list[str], with_masks: set[str], extra: tuple[str, ...] = ()) -> str:
    """The sweep table's two header lines: per set ``img / AUPRO`` (``img`` for sets without masks)."""
    columns = ["recipe", *(f"{n} img / AUPRO" if n in with_masks else f"{n} img" for n in names),
               "mean img", "mean AUPRO", "worst img std", *extra]
    return "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"


def sweep_row(label: str, summary: dict, names: list[str]) -> str:
    """One recipe's row of the sweep table (its :func:`sweep_summary`)."""
    cells = []
    for name in names:
        s = summary["per_set"][name]
        cells.append(f"{s['image_auroc'][0]:.3f}" + (f" / {s['aupro'][0]:.3f}" if "aupro" in s else ""))
    m = summary["mean"]
    worst = summary["worst_image_auroc_std"]
    return (f"| {label} | " + " | ".join(cells) + f" | {m['image_auroc']:.3f} | {m.get('aupro', float('nan')):.3f} | "
            f"{'-' if worst is None else f'{worst:.3f}'} |")
