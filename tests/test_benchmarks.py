"""The benchmark scripts: ``python -m benchmarks.run`` end to end, and the tables' numbers by hand.

``benchmarks.run`` is checked as a script, not for speed: ``--smoke`` shrinks everything (64 px
images, one epoch, a handful of images) so that it takes seconds of compute. Whether the figures meet
their targets is for a full run on a quiet machine to say (benchmarks/README.md). The suite, sweep and
per-seed tables are checked on results written out by hand: means, sample spreads (ddof = 1), the
note above every table, and a saved run rendered again without training.
"""

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common, evaluate_seeds, suite, suite_compare
from simplenet_edu.utils.stats import MEAN_STD_NOTE

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path.stem for path in (REPO / "benchmarks").glob("*.py") if path.stem != "__init__")

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
        [sys.executable, "-m", "benchmarks.run", "--quick", "--smoke", "--output", str(output),
         "--data-dir", str(tmp / "data")],
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
    runs = {"hazelnut_toy": [{"image_auroc": 1.0, "pixel_auroc": 0.9, "aupro": 0.8, "wall_seconds": 10.0},
                             {"image_auroc": 1.0, "pixel_auroc": 0.9, "aupro": 0.6, "wall_seconds": 14.0}],
            "gravel": [{"image_auroc": 0.5, "pixel_auroc": None, "aupro": None, "wall_seconds": 20.0}]}
    summary = suite.summarise(runs)
    # Sample std of 0.8 and 0.6: sqrt((0.1^2 + 0.1^2) / (2 - 1)) = 0.1414 (the population one is 0.1).
    assert summary["per_set"]["hazelnut_toy"]["aupro"] == pytest.approx((0.7, 0.1414), abs=1e-4)
    assert summary["per_set"]["hazelnut_toy"]["wall_seconds"] == pytest.approx((12.0, 2.8284), abs=1e-4)
    assert summary["per_set"]["gravel"]["aupro"] is None
    assert summary["per_set"]["gravel"]["image_auroc"] == (0.5, None)        # one seed: no spread
    assert summary["mean"]["image_auroc"] == pytest.approx(0.75)
    assert summary["mean"]["wall_seconds"] == pytest.approx(16.0)
    assert summary["mean_real"]["image_auroc"] == pytest.approx(1.0)
    table = suite.markdown(summary, [0, 1])
    assert MEAN_STD_NOTE[1:] in table.splitlines()[0]                       # the note above the table
    assert "| hazelnut_toy | 1.000 ± 0.000 | 0.900 ± 0.000 | 0.700 ± 0.141 | 12.0 ± 2.8 |" in table
    assert "| gravel | 0.500 | - | - | 20.0 |" in table
    assert "| **mean, real sets** | **1.000** | **0.900** | **0.700** | **12.0** |" in table
    assert "| **mean, all sets** | **0.750** |" in table
    assert "mean_real" not in suite.summarise({"hazelnut_toy": runs["hazelnut_toy"]})


def test_suite_render_rewrites_a_saved_run_with_sample_spreads(tmp_path, capsys):
    saved = tmp_path / "suite_old.json"
    rows = [{"image_auroc": 0.9, "pixel_auroc": 0.95, "aupro": 0.8, "wall_seconds": 10.0, "seed": 0},
            {"image_auroc": 0.9, "pixel_auroc": 0.97, "aupro": 0.9, "wall_seconds": 12.0, "seed": 1},
            {"image_auroc": 0.9, "pixel_auroc": 0.96, "aupro": 1.0, "wall_seconds": 14.0, "seed": 2}]
    run = {"command": "python benchmarks/suite.py --name old", "seeds": [0, 1, 2], "skipped": ["cookie: skipped"],
           "runs": {"hazelnut_toy": rows}, "summary": {"stale": True}}
    saved.write_text(json.dumps(run))
    suite.render(saved, ["--render", str(saved)])
    printed = capsys.readouterr().out
    assert "| hazelnut_toy | 0.900 ± 0.000 | 0.960 ± 0.010 | 0.900 ± 0.100 | 12.0 ± 2.0 |" in printed
    text = saved.with_suffix(".md").read_text()
    assert text.startswith("# Development suite: `old`")
    assert "Made by `python benchmarks/suite.py --name old` (from the repository root: " \
           "`python -m benchmarks.suite --name old`)" in text
    assert f"rendered from the saved runs by `python -m benchmarks.suite --render {saved}`" in text
    assert text.rstrip().endswith("cookie: skipped")
    rewritten = json.loads(saved.read_text())
    assert rewritten["runs"] == run["runs"]                                    # the saved runs stay as they are
    assert rewritten["summary"]["per_set"]["hazelnut_toy"]["aupro"] == pytest.approx([0.9, 0.1])


def test_suite_compare_gives_each_model_its_sample_spread(tmp_path, capsys):
    def run(aupros, fit):
        rows = [{"image_auroc": 1.0, "pixel_auroc": None, "aupro": a, "wall_seconds": 10.0 + i,
                 "seconds_features": 1.0, "seconds_train": f} for i, (a, f) in enumerate(zip(aupros, fit))]
        return {"command": "python -m benchmarks.suite", "seeds": [0, 1], "runs": {"cookie": rows}}

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(run([0.8, 0.9], [3.0, 5.0])))
    second.write_text(json.dumps(run([0.7, 0.7], [1.0, 1.0])))
    assert suite_compare.main([str(first), str(second), "--names", "A", "B", "--output", str(tmp_path / "ab")]) == 0
    text = (tmp_path / "ab.md").read_text()
    # aupro 0.8, 0.9: sample std 0.0707; features + training 4.0, 6.0: 5.0 ± 1.4; against 2.0: 2.50x.
    assert "| cookie | A | 1.000 ± 0.000 | - | 0.850 ± 0.071 | 5.0 ± 1.4 | 10.5 ± 0.7 |" in text
    assert "| cookie | A / B time | | | | 2.50x | 1.00x |" in text
    assert MEAN_STD_NOTE[1:] in text.splitlines()[0]
    assert json.loads((tmp_path / "ab.json").read_text())["names"] == ["A", "B"]


def test_evaluate_seeds_summary_by_hand():
    def row(seed, aupro):
        return {"seed": seed, "wall_seconds": 10.0, "image_auroc": 1.0, "pixel_auroc": 0.98, "aupro": aupro,
                "f1_max": 1.0, "seconds_features": 1.0, "seconds_train": 4.0, "ms_per_image_inference": 40.0}

    three = evaluate_seeds.summarise([row(0, 0.93), row(1, 0.94), row(2, 0.95)])
    assert three["aupro"]["mean"] == pytest.approx(0.94)
    assert three["aupro"]["std"] == pytest.approx(0.01)                      # sample std; population: 0.0082
    assert (three["aupro"]["min"], three["aupro"]["max"]) == (0.93, 0.95)
    one = evaluate_seeds.summarise([row(0, 0.93)])
    assert one["aupro"]["std"] is None
    table = evaluate_seeds.markdown([row(0, 0.93)], one)
    assert table.splitlines()[-1].startswith("| mean ± std | 1.0000 | 0.9800 | 0.9300 | 10.0000 |")


def test_sweep_rows_by_hand():
    # One seed: no spread ("-"); two seeds: the larger per-set sample std of image AUROC.
    one = {"hazelnut_toy": [{"image_auroc": 1.0, "aupro": 0.8}], "solar_cell": [{"image_auroc": 0.9}]}
    assert common.sweep_header(list(one), {"hazelnut_toy"}).splitlines()[0] == \
        "| recipe | hazelnut_toy img / AUPRO | solar_cell img | mean img | mean AUPRO | worst img std |"
    assert common.sweep_row("x", common.sweep_summary(one), list(one)) == \
        "| x | 1.000 / 0.800 | 0.900 | 0.950 | 0.800 | - |"
    two = {"hazelnut_toy": [{"image_auroc": 1.0, "aupro": 0.8}, {"image_auroc": 0.8, "aupro": 0.6}],
           "solar_cell": [{"image_auroc": 0.9}, {"image_auroc": 0.9}]}
    # 1.0 and 0.8: sample std sqrt(2 * 0.1^2 / 1) = 0.141 (the population one would print 0.100).
    assert common.sweep_row("y", common.sweep_summary(two), list(two)) == \
        "| y | 0.900 / 0.700 | 0.900 | 0.900 | 0.700 | 0.141 |"
    assert MEAN_STD_NOTE in common.sweep_note([0, 1])


def test_sweep_grid_axes_multiply_and_tied_values_stay_together():
    assert common.parse_grid(["a=1,2", "b=x"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert common.parse_grid(["a=1+b=none,a=1e-4+b=true"]) == [{"a": 1, "b": None}, {"a": 1e-4, "b": True}]
    assert common.parse_grid([]) == [{}]


def test_recorded_commands_name_their_module_form():
    assert common.as_module("python benchmarks/suite.py --name before ") == "python -m benchmarks.suite --name before"
    assert common.made_by("python -m benchmarks.sweep --seeds 0") == "Made by `python -m benchmarks.sweep --seeds 0`"
    assert common.command("grid_path", ["--variants", "gaussian, grid path"]) == \
        "python -m benchmarks.grid_path --variants 'gaussian, grid path'"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_imports_as_a_module_of_the_package(name):
    # Each script is a module of the benchmarks package (no sys.path edits): importing it must work
    # and must not run it.
    module = importlib.import_module(f"benchmarks.{name}")
    assert name == "common" or callable(getattr(module, "main", None))
