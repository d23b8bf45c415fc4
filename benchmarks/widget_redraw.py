"""How long one step of the threshold explorer's sliders takes to redraw (no kernel, no browser).

Builds a synthetic EvaluationResult (no training: random textures, smooth anomaly maps with a blob on
each anomalous image, masks under the blobs), then sweeps each slider and times every step: the
observers run synchronously, so a step's time is everything the kernel does for it (numbers, figure
update, drawing and encoding). What the browser then does with the new image is not included.

    python -m benchmarks.widget_redraw [--images 100] [--size 256] [--steps 60] [--seed 0]

The goal is well under a second per step for 100 images of 256 px.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from simplenet_edu.evaluation.evaluator import EvaluationResult
from simplenet_edu.course.widgets import ThresholdExplorer

DEFECTS = ["scratch", "hole", "stain", "crack"]


def synthetic_result(n_images: int, size: int, seed: int) -> EvaluationResult:
    """A result shaped like :func:`simplenet_edu.evaluation.evaluator.evaluate`'s: 40% normal images, the rest
    spread over four defect types; maps are smoothed noise plus a Gaussian blob over each mask."""
    rng = np.random.default_rng(seed)
    n_normal = int(0.4 * n_images)
    labels = np.array([0] * n_normal + [1] * (n_images - n_normal))
    defect_types = ["good"] * n_normal + [DEFECTS[i % len(DEFECTS)] for i in range(n_images - n_normal)]
    rows, cols = np.mgrid[:size, :size]
    maps = np.empty((n_images, size, size), dtype=np.float32)
    masks = np.zeros((n_images, size, size), dtype=np.uint8)
    for i in range(n_images):
        maps[i] = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), sigma=4) * 2.0
        if labels[i]:
            centre, radius = rng.integers(size // 6, size - size // 6, 2), rng.uniform(0.04, 0.15) * size
            distance = np.hypot(rows - centre[0], cols - centre[1])
            masks[i] = distance < radius
            maps[i] += rng.uniform(0.3, 1.5) * np.exp(-((distance / radius) ** 2))
    scores = maps.reshape(n_images, -1).max(axis=1)
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (n_images, size, size)), sigma=(0, 2, 2))
    images = np.repeat((128 + 60 * texture).clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return EvaluationResult(
        image_scores=scores, labels=labels, defect_types=defect_types, anomaly_maps=maps, masks=masks,
        images=images, paths=[f"{i:03d}.png" for i in range(n_images)],
        threshold_normal=float(np.quantile(scores[:n_normal], 0.95)),
        pixel_threshold_normal=float(np.quantile(maps[:n_normal], 0.999)))


def time_steps(slider, n_steps: int) -> np.ndarray:
    """Milliseconds per step of the slider (observers included), over n_steps of its options spread
    evenly from the lowest to the highest: the sliders are SelectionSliders of exact thresholds."""
    times = []
    for index in np.unique(np.linspace(0, len(slider.options) - 1, n_steps).round().astype(int)):
        start = time.perf_counter()
        slider.index = int(index)
        times.append(1000.0 * (time.perf_counter() - start))
    return np.array(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    result = synthetic_result(args.images, args.size, args.seed)
    start = time.perf_counter()
    explorer = ThresholdExplorer(result)
    build_ms = 1000.0 * (time.perf_counter() - start)

    image_ms = time_steps(explorer.image_slider, args.steps)
    pixel_ms = time_steps(explorer.pixel_slider, args.steps // 3)
    filter_ms = []
    for defect in [value for _, value in explorer.defect_filter.options][1:] + ["all"]:
        start = time.perf_counter()
        explorer.defect_filter.value = defect
        filter_ms.append(1000.0 * (time.perf_counter() - start))

    print(f"threshold explorer, {args.images} synthetic test images of {args.size} px "
          f"({len(explorer.summary()['shown'])} shown in the grid; {len(explorer.image_slider.options)} image "
          f"and {len(explorer.pixel_slider.options)} pixel threshold stops)")
    print(f"  build                 {build_ms:8.1f} ms")
    for name, ms in [("image slider step", image_ms), ("pixel slider step", pixel_ms),
                     ("defect filter change", np.array(filter_ms))]:
        print(f"  {name:<21} mean {ms.mean():6.1f} ms   max {ms.max():6.1f} ms   ({len(ms)} steps)")


if __name__ == "__main__":
    main()
