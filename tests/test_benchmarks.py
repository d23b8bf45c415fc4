"""benchmarks/run.py runs end to end and writes every figure it promises.

A check of the script, not of speed: ``--smoke`` shrinks everything (64 px images, one epoch, a
handful of images) so that it takes seconds of compute. Whether the figures meet their targets is for
a full run on a quiet machine to say (benchmarks/README.md).
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "run.py"

DATASET_KEYS = [
    "cached_vs_recompute_epoch_ratio",
    "fit_vs_backbone_pass_ratio",
    "head_flops_fraction_of_matmul",
    "head_gflops",
    "matmul_gflops",
    "predict_vs_backbone_ratio",
    "ms_per_image_predict",
    "ms_per_image_backbone",
    "peak_rss_mb_fit",
    "peak_rss_mb_predict",
    "train_and_evaluate_seconds",
]
SCALING_KEYS = ["n_images", "fit_seconds", "peak_rss_mb", "cache_mb"]


def finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("benchmarks")
    output = tmp / "results.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--smoke", "--output", str(output), "--data-dir", str(tmp / "data")],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "cached / recompute epoch" in completed.stdout  # the Markdown table went to stdout
    return json.loads(output.read_text())


def test_every_dataset_figure_is_finite_and_positive(results):
    demo = results["datasets"]["demo"]
    for key in DATASET_KEYS:
        assert finite_positive(demo.get(key)), f"demo: {key} = {demo.get(key)!r}"
    # hazelnut_toy is measured in full runs; in --smoke it is skipped, with a note saying why.
    assert isinstance(results["datasets"]["hazelnut_toy"], str)


def test_scaling_rows_grow_with_the_number_of_images(results):
    rows = results["scaling"]["rows"]
    assert len(rows) >= 2
    for row in rows:
        for key in SCALING_KEYS:
            assert finite_positive(row.get(key)), f"scaling row {row}: {key}"
    sizes = [row["n_images"] for row in rows]
    assert sizes == sorted(sizes)
    # The cache is computed from the shapes, so it is exactly proportional to the image count.
    per_image = {row["cache_mb"] / row["n_images"] for row in rows}
    assert max(per_image) == pytest.approx(min(per_image))


def test_cache_sizes_follow_from_the_shapes(results):
    cache = results["cache_mb_per_image"]
    for preset in ("default", "quick", "paper"):
        for dtype in ("float32", "float16"):
            assert finite_positive(cache[preset][dtype])
        assert cache[preset]["float16"] == pytest.approx(cache[preset]["float32"] / 2)
    # Paper preset: 36 x 36 patches x 1536 dims x 4 bytes.
    assert cache["paper"]["float32"] == pytest.approx(36 * 36 * 1536 * 4 / 1e6)
    assert cache["default"]["float32"] == pytest.approx(32 * 32 * 384 * 4 / 1e6)
    assert results["paper_images_in_8gb"] == {"float32": 1004, "float16": 2009}
    # The demo run's measured cache matches the shape arithmetic of its own configuration.
    assert results["datasets"]["demo"]["cache_mb_measured"] == pytest.approx(cache["this_run"]["float32"])


def test_suite_summary_means_by_hand():
    # Two seeds on a real set, one on a demo texture without pixel metrics: the real-set mean row
    # leaves the demo texture out, the all-sets row does not.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import suite

    runs = {"hazelnut_toy": [{"image_auroc": 1.0, "pixel_auroc": 0.9, "aupro": 0.8, "wall_seconds": 10.0},
                             {"image_auroc": 1.0, "pixel_auroc": 0.9, "aupro": 0.6, "wall_seconds": 14.0}],
            "gravel": [{"image_auroc": 0.5, "pixel_auroc": None, "aupro": None, "wall_seconds": 20.0}]}
    summary = suite.summarise(runs)
    assert summary["per_set"]["hazelnut_toy"]["aupro"] == pytest.approx((0.7, 0.1))
    assert summary["per_set"]["gravel"]["aupro"] is None
    assert summary["mean"]["image_auroc"] == pytest.approx(0.75)
    assert summary["mean"]["wall_seconds"] == pytest.approx(16.0)
    assert summary["mean_real"]["image_auroc"] == pytest.approx(1.0)
    table = suite.markdown(summary, [0, 1])
    assert "| **mean, real sets** | **1.000** | **0.900** | **0.700** | **12.0** |" in table
    assert "| **mean, all sets** | **0.750** |" in table
    assert "mean_real" not in suite.summarise({"hazelnut_toy": runs["hazelnut_toy"]})


def test_sweep_rows_by_hand():
    # One seed: no spread ("-"); two seeds: the larger per-set std of image AUROC.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import sweep

    one = {"hazelnut_toy": [{"image_auroc": 1.0, "aupro": 0.8}], "solar_cell": [{"image_auroc": 0.9}]}
    assert sweep.header_markdown(list(one), {"hazelnut_toy"}).splitlines()[0] == \
        "| recipe | hazelnut_toy img / AUPRO | solar_cell img | mean img | mean AUPRO | worst img std |"
    assert sweep.row_markdown("x", sweep.summarise(one), list(one)) == "| x | 1.000 / 0.800 | 0.900 | 0.950 | 0.800 | - |"
    two = {"hazelnut_toy": [{"image_auroc": 1.0, "aupro": 0.8}, {"image_auroc": 0.8, "aupro": 0.6}],
           "solar_cell": [{"image_auroc": 0.9}, {"image_auroc": 0.9}]}
    assert sweep.row_markdown("y", sweep.summarise(two), list(two)) == "| y | 0.900 / 0.700 | 0.900 | 0.900 | 0.700 | 0.100 |"
