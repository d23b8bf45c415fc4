"""predict on a production folder: heat maps at each image's own size, subfolders, CSV cells that cannot
run, and a run cut short (Ctrl-C, a real SIGKILL) that keeps a valid table of what it scored.

Two tiny models: one on the 64 px demo textures, and one on 576 x 768 portrait photographs, resized to
80 x 80 and centre-cropped to 64 x 64, whose heat maps must lie on a defect painted at a known place.
"""

import csv
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simplenet_edu import SimpleNet, SimpleNetConfig, data
from simplenet_edu.apps.cli import main
from simplenet_edu.data.demo import _texture
from simplenet_edu.deploy import heatmaps
from simplenet_edu.utils.atomic import csv_cell, is_temp_name

PORTRAIT_HW = (768, 576)          # height, width: a portrait part
DEFECT = (440, 180, 70)           # centre row, centre column, radius (pixels of the photograph)
DEFECT_RGB = (230, 40, 200)


def run(argv, capsys):
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def rows_of(out_dir: Path) -> list[dict]:
    with (out_dir / "scores.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def temporary_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if is_temp_name(p.name))


# ------------------------------------------------------------------ the 64 px model


@pytest.fixture(scope="module")
def grass(tmp_path_factory):
    return data.make_demo_dataset(tmp_path_factory.mktemp("grass"), "grass", image_size=64, n_train=8,
                                  n_test_good=4, n_test_per_defect=1)


@pytest.fixture(scope="module")
def checkpoint(grass, tmp_path_factory):
    model = SimpleNet(SimpleNetConfig.quick(image_size=64, steps=20, device="cpu")).fit(grass, progress=False)
    return model.save(tmp_path_factory.mktemp("model") / "model.pt")


def predict(model_path, images, out_dir, *extra, model_arg="--checkpoint"):
    return ["predict", model_arg, str(model_path), "--images", str(images), "--output-dir", str(out_dir), *extra]


def test_recursive_scores_every_image_below_and_keeps_relative_paths(grass, checkpoint, tmp_path, capsys):
    images = tmp_path / "line"
    for folder, source in (("", "000.png"), ("", "001.png"), ("a", "002.png"), ("b", "003.png"), ("b/c", "000.png")):
        (images / folder).mkdir(parents=True, exist_ok=True)
        (images / folder / ("part.png" if folder else source)).write_bytes((grass / "test/good" / source).read_bytes())
    (images / ".hidden").mkdir()
    (images / ".hidden" / "part.png").write_bytes((grass / "test/good/000.png").read_bytes())

    # Without --recursive: the two top-level images, and one line counting the three folders left out.
    code, out, err = run(predict(checkpoint, images, tmp_path / "top", "--device", "cpu"), capsys)
    assert code == 0 and out.startswith("2 images scored")
    assert err.splitlines() == [f"simplenet-edu: warning: {images}: 3 subfolders with images not read "
                                "(--recursive scores every image below the folder)"]

    out_dir = images / "predictions"   # inside the folder it scores: never read back as images
    for _ in range(2):
        code, out, err = run(predict(checkpoint, images, out_dir, "--recursive", "--device", "cpu"), capsys)
        assert code == 0 and out.startswith("5 images scored") and err == ""
    rows = rows_of(out_dir)
    assert [row["path"] for row in rows] == [str(images / p) for p in
                                             ("000.png", "001.png", "a/part.png", "b/c/part.png", "b/part.png")]
    assert [row["heatmap"] for row in rows] == ["000_heatmap.png", "001_heatmap.png", "a/part_heatmap.png",
                                                "b/c/part_heatmap.png", "b/part_heatmap.png"]
    pictures = [np.asarray(Image.open(out_dir / row["heatmap"])) for row in rows]
    assert not np.array_equal(pictures[2], pictures[4])   # two part.png, two heat maps, none overwritten
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.png")) == sorted(r["heatmap"] for r in rows)


def test_text_cells_that_a_spreadsheet_would_run_get_an_apostrophe(grass, checkpoint, tmp_path, capsys, monkeypatch):
    images = tmp_path / "names"
    images.mkdir()
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(A1).png", "\tpart.png", "plain.png"]
    for name in names:
        (images / name).write_bytes((grass / "test/good/000.png").read_bytes())
    out_dir = tmp_path / "out"
    monkeypatch.chdir(images)   # --images . : the path cells begin with the names too
    code, _, _ = run(predict(checkpoint, ".", out_dir, "--device", "cpu"), capsys)
    assert code == 0
    text = (out_dir / "scores.csv").read_text()
    rows = {row["path"]: row for row in csv.DictReader(text.splitlines())}
    assert sorted(rows) == sorted(["'=HYPERLINK(1).png", "'+1.png", "'-2.png", "'@SUM(A1).png", "'\tpart.png",
                                   "plain.png"])
    assert rows["'=HYPERLINK(1).png"]["heatmap"] == "'=HYPERLINK(1)_heatmap.png"
    assert rows["plain.png"]["heatmap"] == "plain_heatmap.png"
    assert (out_dir / "=HYPERLINK(1)_heatmap.png").is_file()   # the file keeps its name; the cell is text
    for row in rows.values():
        float(row["score"]), float(row["map_min"])              # numbers stay numbers (a minus sign too)
    # By hand: what gets the apostrophe, and what does not.
    assert [csv_cell(v) for v in ("=1+2", "+x", "-x", "@x", "\tx", "\rx", "-0.25", "+3e-05", "1.5", "a=b", "", 7)] \
        == ["'=1+2", "'+x", "'-x", "'@x", "'\tx", "'\rx", "-0.25", "+3e-05", "1.5", "a=b", "", 7]


def test_ctrl_c_keeps_a_valid_table_of_the_images_scored(grass, checkpoint, tmp_path, capsys, monkeypatch):
    images = tmp_path / "many"
    images.mkdir()
    for i in range(12):
        (images / f"{i:03d}.png").write_bytes((grass / "test/good" / f"{i % 4:03d}.png").read_bytes())
    saved = []
    real_save = Image.Image.save

    def interrupted(self, fp, *args, **kwargs):
        if len(saved) == 10:
            raise KeyboardInterrupt            # Ctrl-C while the 11th heat map is written
        real_save(self, fp, *args, **kwargs)
        saved.append(fp)

    monkeypatch.setattr(Image.Image, "save", interrupted)
    out_dir = tmp_path / "out"
    code, _, err = run(predict(checkpoint, images, out_dir, "--device", "cpu"), capsys)
    assert code == 130 and err == "simplenet-edu: interrupted\n"
    rows = rows_of(out_dir)
    assert [row["path"] for row in rows] == [str(images / f"{i:03d}.png") for i in range(10)]
    assert all(float(row["score"]) and (out_dir / row["heatmap"]).is_file() for row in rows)
    assert temporary_files(out_dir) == []


# ------------------------------------------------------------------ 576 x 768 photographs, a painted defect


def photograph(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[768, 576, 3] uint8: a portrait cut of the grass texture, flipped at random."""
    height, width = PORTRAIT_HW
    left = int(rng.integers(0, texture.shape[1] - width + 1))
    cut = texture[:height, left:left + width]
    cut = cut[::-1] if rng.random() < 0.5 else cut
    cut = cut[:, ::-1] if rng.random() < 0.5 else cut
    return np.clip(np.round(cut), 0, 255).astype(np.uint8)


def with_defect(photo: np.ndarray) -> np.ndarray:
    row, col, radius = DEFECT
    yy, xx = np.mgrid[:photo.shape[0], :photo.shape[1]]
    painted = photo.copy()
    painted[(yy - row) ** 2 + (xx - col) ** 2 <= radius ** 2] = DEFECT_RGB
    return painted


def near_defect(shape, margin: float) -> np.ndarray:
    row, col, radius = DEFECT
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - row) ** 2 + (xx - col) ** 2 <= (radius + margin) ** 2


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    """A model of 576 x 768 photographs (resized to 80 x 80, cropped to 64 x 64) and a folder to score:
    ``defect.png`` (a magenta disc at DEFECT) and ``normal.png``."""
    root = tmp_path_factory.mktemp("portrait")
    rng = np.random.default_rng(0)
    texture = _texture("grass", PORTRAIT_HW[0] // 2)         # 768 x 768
    (root / "train/good").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(photograph(texture, rng)).save(root / "train/good" / f"{i:03d}.png")
    images = root / "inspect"
    images.mkdir()
    Image.fromarray(with_defect(photograph(texture, rng))).save(images / "defect.png")
    Image.fromarray(photograph(texture, rng)).save(images / "normal.png")
    model = SimpleNet(SimpleNetConfig.quick(image_size=80, crop_size=64, steps=60, device="cpu")).fit(root,
                                                                                                      progress=False)
    assert (model.resize_shape, model.image_shape) == ((80, 80), (64, 64))
    return model, model.save(root / "model.pt"), images


@pytest.fixture(scope="module")
def portrait_onnx(portrait, tmp_path_factory):
    """The portrait model exported by ``simplenet-edu export``."""
    pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[test]')")
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["--quiet", "export", "--checkpoint", str(portrait[1]), "--output", str(path)]) == 0
    return path


def test_heat_maps_are_drawn_at_the_photographs_size_and_lie_on_the_defect(portrait, tmp_path, capsys):
    model, checkpoint, images = portrait
    height, width = PORTRAIT_HW
    raw_dir, overlay_dir = tmp_path / "raw", tmp_path / "overlay"
    assert run(predict(checkpoint, images, raw_dir, "--no-overlay", "--device", "cpu"), capsys)[0] == 0
    code, out, _ = run(predict(checkpoint, images, overlay_dir, "--device", "cpu"), capsys)
    assert code == 0 and "at each image's own size" in out

    amap = heatmaps.read_raw(raw_dir / "defect_heatmap.png")
    assert amap.shape == PORTRAIT_HW
    # The crop kept the centre 64 of 80 resized pixels: 76.8 rows and 57.6 columns on each side are not scored.
    scored = np.isfinite(amap)
    assert scored[77:691, 58:518].all() and not scored[:76].any() and not scored[692:].any()
    assert not scored[:, :57].any() and not scored[:, 519:].any()
    # The hottest pixels lie on the painted disc (the map is 64 x 64 smoothed: allow a few of its pixels).
    hot = amap >= np.nanquantile(amap, 0.99)
    assert near_defect(amap.shape, margin=0)[np.unravel_index(np.nanargmax(amap), amap.shape)]
    assert near_defect(amap.shape, margin=30)[hot].mean() > 0.9

    with Image.open(overlay_dir / "defect_heatmap.png") as png:
        assert png.size == (width, height)                      # PIL: (width, height)
        picture = np.asarray(png.convert("RGB")).astype(int)
    photo = np.asarray(Image.open(images / "defect.png")).astype(int)
    margin = picture[700:, 100:500]                              # below the crop: grey, no colour
    assert np.abs(margin[..., 0] - margin[..., 1]).max() <= 1 and np.abs(margin[..., 1] - margin[..., 2]).max() <= 1
    # Where the map is cool, the photograph shows through: the overlay follows the photo's own pixels.
    cool = scored & (amap <= np.nanquantile(amap, 0.2))
    assert np.corrcoef(picture[cool].mean(-1), photo[cool].mean(-1))[0, 1] > 0.8

    # --map-size model: the model's 64 x 64 input, as the model sees it.
    small = tmp_path / "small"
    assert run(predict(checkpoint, images, small, "--map-size", "model", "--device", "cpu"), capsys)[0] == 0
    assert Image.open(small / "defect_heatmap.png").size == (64, 64)


def test_onnx_draws_the_same_maps_at_the_photographs_size(portrait, portrait_onnx, tmp_path, capsys):
    model, checkpoint, images = portrait
    exported = portrait_onnx
    maps = {}
    for kind, model_arg, path in (("onnx", "--model", exported), ("torch", "--checkpoint", checkpoint)):
        out_dir = tmp_path / kind
        assert run(predict(path, images, out_dir, "--no-overlay", model_arg=model_arg), capsys)[0] == 0
        maps[kind] = heatmaps.read_raw(out_dir / "defect_heatmap.png")
    assert maps["onnx"].shape == maps["torch"].shape == PORTRAIT_HW
    assert np.array_equal(np.isnan(maps["onnx"]), np.isnan(maps["torch"]))
    step = (np.nanmax(maps["torch"]) - np.nanmin(maps["torch"])) / 65535
    assert np.nanmax(np.abs(maps["onnx"] - maps["torch"])) <= 2 * step + 1e-4

    from simplenet_edu.deploy.runtime import OnnxModel, read_image, read_original

    onnx_model = OnnxModel(exported)
    photo = read_original(images / "defect.png")
    _, (amap,) = onnx_model.predict(read_image(images / "defect.png", onnx_model.resize_shape,
                                               onnx_model.image_shape)[None])
    on_photo = onnx_model.map_to_image(amap, photo.shape[:2])
    assert on_photo.shape == PORTRAIT_HW and near_defect(PORTRAIT_HW, 0)[np.unravel_index(np.nanargmax(on_photo),
                                                                                          PORTRAIT_HW)]


def test_viz_lays_a_models_map_on_the_photograph(portrait):
    from simplenet_edu.course import viz

    model, _, images = portrait
    photo = np.asarray(Image.open(images / "defect.png"))
    _, maps = model.predict(data.load_image(images / "defect.png", model.resize_shape, model.image_shape)[None])
    on_photo = viz.map_on_image(maps[0], photo, model)
    assert on_photo.shape == PORTRAIT_HW
    np.testing.assert_array_equal(on_photo, heatmaps.map_to_image(maps[0].numpy(), PORTRAIT_HW,
                                                                  model.resize_shape, model.image_shape))
    assert near_defect(PORTRAIT_HW, 0)[np.unravel_index(np.nanargmax(on_photo), PORTRAIT_HW)]


def test_map_to_image_by_hand():
    amap = np.arange(16, dtype=np.float32).reshape(4, 4)
    # 16 x 16 resized to 8 x 8, centre 4 x 4 kept: original pixels 4..11 are scored, the rest is NaN.
    back = heatmaps.map_to_image(amap, (16, 16), (8, 8), (4, 4))
    assert np.isnan(back[:4]).all() and np.isnan(back[12:]).all() and np.isnan(back[:, :4]).all()
    # Original pixel x sits at (x + 0.5) / 2 - 0.5 - 2 in the crop: 4 -> -0.25 (clamped to 0), 5 -> 0.25, ...
    np.testing.assert_allclose(back[4, 4:12], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    np.testing.assert_allclose(back[4:12, 4], [0, 1, 3, 5, 7, 9, 11, 12])
    assert heatmaps.scored_box(back) == (4, 4, 12, 12)
    # No crop, same size: the map itself; twice the size: every map pixel covers two.
    np.testing.assert_array_equal(heatmaps.map_to_image(amap, (4, 4), (4, 4), (4, 4)), amap)
    wide = heatmaps.map_to_image(np.array([[0.0, 4.0]]), (1, 4), (1, 2), (1, 2))
    np.testing.assert_allclose(wide, [[0, 1, 3, 4]])
    # A raw map keeps the unscored margin out of its range and reads it back as NaN.
    pixels, low, high = heatmaps.encode_raw(back)
    assert (low, high) == (0.0, 15.0) and pixels[0, 0] == 0 and pixels[11, 11] == 65535


# ------------------------------------------------------------------ a real SIGKILL


def test_a_predict_killed_outright_keeps_a_valid_table(portrait, portrait_onnx, tmp_path, start_process):
    """SIGKILL to ``predict`` (the ONNX path: no torch to import) halfway through 30 photographs: every
    row of scores.csv is whole and its heat map complete; the next run clears the temporary file the
    kill may have left."""
    _, _, images = portrait
    exported = portrait_onnx
    many = tmp_path / "many"
    many.mkdir()
    for i in range(30):
        (many / f"{i:03d}.png").symlink_to(images / ("defect.png" if i % 2 else "normal.png"))
    out_dir = tmp_path / "out"
    argv = [sys.executable, "-m", "simplenet_edu", "--quiet", *predict(exported, many, out_dir, model_arg="--model")]
    process = start_process(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = out_dir / "scores.csv"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if table.exists() and table.read_bytes().count(b"\n") >= 4:   # the header and three rows
            break
        time.sleep(0.02)
    assert process.poll() is None, "predict ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert table.read_bytes().endswith(b"\r\n")                    # no half row
    rows = rows_of(out_dir)
    assert 3 <= len(rows) < 30
    for i, row in enumerate(rows):
        assert row["path"] == str(many / f"{i:03d}.png") and math.isfinite(float(row["score"]))
        with Image.open(out_dir / row["heatmap"]) as png:
            png.load()
            assert png.size == PORTRAIT_HW[::-1]
    # The next run: whatever the kill left under a temporary name is gone, and every image is scored.
    assert main(["--quiet", *predict(exported, many, out_dir, model_arg="--model")]) == 0
    assert len(rows_of(out_dir)) == 30 and temporary_files(out_dir) == []


def test_the_scaling_benchmarks_figures_by_hand():
    from benchmarks.predict_scaling import summarise, to_markdown

    runs = {"torch": {200: [{"seconds": 12.0, "peak_rss_mb": 900.0}, {"seconds": 10.0, "peak_rss_mb": 910.0}],
                      2000: [{"seconds": 100.0, "peak_rss_mb": 950.0}]}}
    table = summarise(runs)["torch"]
    assert [row["seconds"] for row in table["rows"]] == [11.0, 100.0]           # medians
    assert [row["peak_rss_mb"] for row in table["rows"]] == [910.0, 950.0]      # the largest peaks
    assert table["rows"][0]["images_per_second"] == pytest.approx(200 / 11)
    assert table["peak_rss_ratio"] == pytest.approx(950 / 910)
    assert table["marginal_images_per_second"] == pytest.approx(1800 / 89)   # (2000 - 200) / (100 - 11)
    text = to_markdown({"command": "python -m benchmarks.predict_scaling", "threads": 2, "image_size": 256,
                        "config": {"backbone": "b", "image_size": 256}, "repeats": 2, "models": {"torch": table}})
    assert "| torch | 2,000 | 100.0 | 20.0 | 950 | **1.044** | 20.2 |" in text
