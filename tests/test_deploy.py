"""Deploy: ONNX export checked against torch, predict under onnxruntime without torch, readable outputs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simplenet_edu import InputError, SimpleNet, SimpleNetConfig, data
from simplenet_edu.deploy import export as deploy, heatmaps, runtime as onnx_predict
from simplenet_edu.apps.cli import main

pytest.importorskip("onnxruntime", reason="needs onnxruntime (pip install -e '.[test]')")
pytest.importorskip("onnx", reason="needs onnx (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return data.make_demo_dataset(tmp_path_factory.mktemp("demo"), "brick", image_size=128, n_train=12,
                                  n_test_good=4, n_test_per_defect=2)


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    """A quick model (few steps: the numbers, not the quality, are tested) and its checkpoint."""
    model = SimpleNet(SimpleNetConfig.quick(steps=40, device="cpu")).fit(demo, progress=False)
    path = model.save(tmp_path_factory.mktemp("model") / "model.pt")
    return model, path


@pytest.fixture(scope="module")
def test_images(demo, trained):
    model, _ = trained
    paths = sorted((demo / "test").glob("*/*.png"))
    return paths, torch.stack([data.load_image(p, model.resize_shape, model.image_shape) for p in paths])


@pytest.fixture(scope="module")
def exported(demo, trained, tmp_path_factory):
    """``simplenet-edu export`` of the checkpoint, checked on the demo's test/good images."""
    _, checkpoint = trained
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["--quiet", "export", "--checkpoint", str(checkpoint), "--output", str(path),
                 "--images", str(demo / "test" / "good")]) == 0
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ export


def test_onnxruntime_matches_torch_on_the_test_images(exported, trained, test_images):
    model, _ = trained
    _, images = test_images
    onnx_model = onnx_predict.OnnxModel(exported)
    want_scores, want_maps = model.predict(images)
    # Every test image in one batch, in batches of 3 and one at a time: the batch axis is dynamic.
    for batch_size in (len(images), 3, 1):
        scores, maps = onnx_model.predict(images.numpy(), batch_size=batch_size)
        assert scores.shape == (len(images),) and maps.shape == (len(images), *model.image_shape)
        assert np.abs(scores - want_scores.numpy()).max() <= deploy.DEFAULT_TOLERANCE
        assert np.abs(maps - want_maps.numpy()).max() <= deploy.DEFAULT_TOLERANCE
    [graph_input] = onnx_model.session.get_inputs()
    assert graph_input.shape[1:] == [3, *model.image_shape] and not isinstance(graph_input.shape[0], int)


def test_metadata_carries_thresholds_spreads_and_configuration(exported, trained):
    model, _ = trained
    meta = onnx_predict.OnnxModel(exported).metadata
    assert meta["format"] == "simplenet-edu-onnx" and meta["version"] == 1 and meta["model_type"] == "SimpleNet"
    # JSON keeps a float's every digit: the thresholds are the model's, exactly.
    assert model.threshold_normal is not None
    assert meta["threshold_normal"] == model.threshold_normal
    assert meta["pixel_threshold_normal"] == model.pixel_threshold_normal
    assert meta["normal_score_spread"] == model.normal_score_spread > 0
    assert meta["normal_pixel_spread"] == model.normal_pixel_spread > 0
    assert meta["config"] == json.loads(json.dumps(model.config.to_dict()))
    assert tuple(meta["image_shape"]) == model.image_shape and tuple(meta["resize_shape"]) == model.resize_shape
    assert "threshold_f1" not in meta
    check = meta["export_check"]
    assert check["images"] == 4 and check["tolerance"] == deploy.DEFAULT_TOLERANCE
    assert 0 <= check["max_score_difference"] <= check["tolerance"]


def test_the_f1_threshold_comes_from_an_evaluation_of_this_model(trained, tmp_path):
    model, _ = trained
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"threshold_f1": 0.25, "f1_max": 0.8, "threshold_normal": model.threshold_normal}))
    meta = deploy.export_metadata(model, "torchscript", deploy.read_evaluation(results, model))
    assert json.loads(meta["threshold_f1"]) == 0.25 and "test set" in meta["threshold_f1_source"]
    results.write_text(json.dumps({"threshold_f1": 0.25, "threshold_normal": model.threshold_normal + 1}))
    with pytest.raises(InputError, match="another model"):
        deploy.read_evaluation(results, model)


def test_a_disagreement_beyond_the_tolerance_refuses_and_writes_nothing(trained, test_images, tmp_path):
    """The dynamo exporter here: its true outputs match torch, then a perturbation of 1e-3 is refused."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    model, _ = trained
    _, images = test_images
    seen = []

    def perturb(scores, maps):
        seen.append(scores)
        return scores + 1e-3, maps

    target = tmp_path / "model.onnx"
    with pytest.raises(InputError) as caught:
        deploy.export_onnx(model, target, images=images[:3], exporter="dynamo", perturb=perturb)
    message = str(caught.value)
    assert "\n" not in message and "beyond the tolerance 0.0001" in message and "nothing written" in message
    assert "scores 0.001" in message
    assert not target.exists() and leftovers(tmp_path) == []
    want = model.predict(images[:3])[0].numpy()
    assert np.abs(seen[0] - want).max() <= deploy.DEFAULT_TOLERANCE   # what dynamo really gave


def test_cli_refusal_is_one_line_and_exit_code_2(trained, tmp_path, capsys, monkeypatch):
    _, checkpoint = trained
    real = deploy.run_onnxruntime

    def off_by_a_bit(onnx_model, images):
        scores, maps = real(onnx_model, images)
        return scores, maps + 0.01

    monkeypatch.setattr(deploy, "run_onnxruntime", off_by_a_bit)
    target = tmp_path / "model.onnx"
    code = main(["--quiet", "export", "--checkpoint", str(checkpoint), "--output", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"simplenet-edu: error: {target}: onnxruntime and torch disagree")
    assert "maps 0.01" in err and not target.exists() and leftovers(tmp_path) == []


def test_unfolded_non_square_variant_exports_too_and_conv_adaptor_is_refused(tmp_path):
    # Untrained heads in evaluation mode give scores as definite as trained ones: enough to compare.
    model = SimpleNet(SimpleNetConfig.quick(image_size=(48, 80), discriminator="conv", device="cpu")).eval()
    model.sigma, model.fitted = 1.0, True
    report = deploy.export_onnx(model, tmp_path / "conv.onnx")
    assert report.max_score_difference <= deploy.DEFAULT_TOLERANCE
    assert report.max_map_difference <= deploy.DEFAULT_TOLERANCE
    onnx_model = onnx_predict.OnnxModel(report.path)
    assert onnx_model.image_shape == (48, 80) and onnx_model.threshold_normal is None
    images = torch.rand(3, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    assert np.abs(onnx_model.predict(images.numpy())[1] - model.predict(images)[1].numpy()).max() <= 1e-4
    conv = SimpleNet(SimpleNetConfig.quick(image_size=64, adaptor="conv", device="cpu")).eval()
    conv.sigma, conv.fitted = 1.0, True
    with pytest.raises(InputError, match="adaptor cannot be exported"):
        deploy.export_onnx(conv, tmp_path / "x.onnx")
    with pytest.raises(InputError, match="not trained"):
        deploy.export_onnx(SimpleNet(SimpleNetConfig.quick(image_size=64, device="cpu")), tmp_path / "y.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.onnx"]


# ------------------------------------------------------------------ predict


def _predict(model_arg, model_path, images, out_dir, *extra):
    assert main(["--quiet", "predict", model_arg, str(model_path), "--images", str(images),
                 "--output-dir", str(out_dir), "--device", "cpu", *extra]) == 0
    return list(csv.DictReader((out_dir / "scores.csv").open()))


def test_predict_through_onnx_equals_predict_through_torch(exported, trained, demo, tmp_path):
    model, checkpoint = trained
    images = demo / "test" / "hole"
    for overlay in ("--overlay", "--no-overlay"):
        via_onnx = _predict("--model", exported, images, tmp_path / f"onnx{overlay}", overlay)
        via_torch = _predict("--checkpoint", checkpoint, images, tmp_path / f"torch{overlay}", overlay)
        assert [r["path"] for r in via_onnx] == [r["path"] for r in via_torch] == [str(p) for p in sorted(images.iterdir())]
        for a, b in zip(via_onnx, via_torch):
            assert a["anomalous"] == b["anomalous"] and a["anomalous"] in ("yes", "no")
            assert a["heatmap"] == b["heatmap"] and a["error"] == b["error"] == ""
            for key in ("score", "normalised_score", "map_min", "map_max"):
                assert abs(float(a[key]) - float(b[key])) <= deploy.DEFAULT_TOLERANCE, key
            assert (float(a["normalised_score"]) >= 0.5) == (a["anomalous"] == "yes")
            pictures = [np.asarray(Image.open(tmp_path / f"{kind}{overlay}" / a["heatmap"])).astype(int)
                        for kind in ("onnx", "torch")]
            if overlay == "--overlay":
                assert pictures[0].shape == (*model.image_shape, 3)
                # Colours agree to a unit of rounding; a contour pixel may flip where the map sits on the threshold.
                differs = np.abs(pictures[0] - pictures[1]).max(axis=-1) > 1
                assert differs.mean() < 0.002
            else:
                assert pictures[0].dtype == pictures[1].dtype and np.abs(pictures[0] - pictures[1]).max() <= 2
    # The raw maps read back to torch's maps, to the 16-bit step of their range.
    first = sorted(images.iterdir())[0]
    want = model.predict(data.load_image(first, model.resize_shape, model.image_shape)[None])[1][0].numpy()
    row = via_onnx[0]
    back = heatmaps.read_raw(tmp_path / "onnx--no-overlay" / row["heatmap"])
    step = (float(row["map_max"]) - float(row["map_min"])) / 65535
    assert np.abs(back - want).max() <= step / 2 + deploy.DEFAULT_TOLERANCE
    with Image.open(tmp_path / "onnx--no-overlay" / row["heatmap"]) as png:
        assert png.mode.startswith("I") and float(png.text["map_min"]) == pytest.approx(float(row["map_min"]))


def test_onnx_predict_never_imports_torch(exported, demo, tmp_path):
    """As on a machine without them: importing torch (or the other training packages) fails there."""
    out_dir = tmp_path / "pred"
    script = (
        "import sys\n"
        "for name in ('torch', 'torchvision', 'timm', 'matplotlib', 'scipy', 'sklearn', 'skimage', 'tqdm'):\n"
        "    sys.modules[name] = None\n"
        "from simplenet_edu.apps.cli import main\n"
        f"code = main(['--quiet', 'predict', '--model', {str(exported)!r}, '--images', "
        f"{str(demo / 'test' / 'scratch')!r}, '--output-dir', {str(out_dir)!r}])\n"
        "loaded = sorted(m for m, module in sys.modules.items() if module is not None and m.split('.')[0] in\n"
        "                ('torch', 'torchvision', 'timm', 'matplotlib', 'scipy', 'sklearn', 'skimage', 'tqdm'))\n"
        "print(code, loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 []"
    assert len(list(csv.DictReader((out_dir / "scores.csv").open()))) == 2


def test_onnx_predict_lists_a_bad_image_and_scores_the_others(exported, demo, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for source in sorted((demo / "test" / "good").iterdir())[:2]:
        (images / source.name).write_bytes(source.read_bytes())
    (images / "broken.png").write_bytes(b"not a png")
    out_dir = tmp_path / "pred"
    code = main(["--quiet", "predict", "--model", str(exported), "--images", str(images), "--output-dir", str(out_dir)])
    _, err = capsys.readouterr()
    assert code == 2 and f"{images / 'broken.png'}: cannot read image" in err
    rows = {Path(r["path"]).name: r for r in csv.DictReader((out_dir / "scores.csv").open())}
    assert rows["broken.png"]["score"] == "" and rows["broken.png"]["error"].startswith("cannot read image")
    assert rows["000.png"]["error"] == "" and rows["000.png"]["anomalous"] in ("yes", "no")


def test_a_file_that_is_not_our_onnx_is_a_one_line_error(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    for path, problem in ((tmp_path / "none.onnx", "model file not found"),
                          (garbage, "not an ONNX model onnxruntime can load"),
                          (foreign, "not a simplenet-edu export")):
        code = main(["--quiet", "predict", "--model", str(path), "--images", str(tmp_path / "images"),
                     "--output-dir", str(tmp_path / "out")])
        _, err = capsys.readouterr()
        assert code == 2 and err.startswith(f"simplenet-edu: error: {path}: {problem}") and err.count("\n") == 1


# ------------------------------------------------------------------ torch-free pieces


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("sizes", [(40, 40), ((40, 56), (32, 48)), ((45, 30), (40, 24))])
def test_read_image_matches_data_load_image(tmp_path, mode, sizes):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 51, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray((pixels[..., 0].astype(np.uint16) * 257))
    elif mode == "P":
        image = image.quantize(16)
        image.info["transparency"] = 0
    else:
        image = image.convert(mode)
    path = tmp_path / "x.png"
    image.save(path, **({"transparency": 0} if mode == "P" else {}))
    resize, crop = (sizes, sizes) if isinstance(sizes[0], int) else sizes
    resize_hw, crop_hw = data.as_shape(resize), data.as_shape(crop)
    mine = onnx_predict.read_image(path, resize_hw, crop_hw)
    theirs = data.load_image(path, resize_hw, crop_hw).numpy()
    assert mine.shape == theirs.shape == (3, *crop_hw)
    np.testing.assert_array_equal(mine, theirs)


def test_image_listing_matches_data(tmp_path):
    assert onnx_predict.IMAGE_EXTENSIONS == data.IMAGE_EXTENSIONS
    for name in ("b.PNG", "a.jpg", ".hidden.png", "notes.txt", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert onnx_predict.list_images(tmp_path) == data.list_images(tmp_path)
    with pytest.raises(InputError, match="folder not found"):
        onnx_predict.list_images(tmp_path / "missing")


def test_normalised_score_formula_by_hand():
    # threshold 1, spread 0.5: 1 / (1 + 9 ** (-(s - 1) / 0.5))
    values = heatmaps.normalised([1.0, 1.5, 0.5, 0.0, 2.0], threshold=1.0, spread=0.5)
    np.testing.assert_allclose(values, [0.5, 0.9, 0.1, 1 / 82, 81 / 82], rtol=1e-12)
    assert heatmaps.normalised([1.0], None, 0.5) is None and heatmaps.normalised([1.0], 1.0, 0.0) is None
    assert heatmaps.normalised([1e6], 0.0, 1.0)[0] == 1.0   # no overflow far out


def test_robust_spread_by_hand():
    from simplenet_edu.utils.stats import robust_spread

    # 0, 1, 2, 3, 100: median 2, absolute deviations 2, 1, 0, 1, 98, their median 1; the 100 does not count.
    assert robust_spread(np.array([0.0, 1.0, 2.0, 3.0, 100.0])) == pytest.approx(1.4826)


def test_raw_map_round_trip():
    amap = np.linspace(-0.7, 1.3, 64 * 48).reshape(64, 48)
    pixels, low, high = heatmaps.encode_raw(amap)
    assert pixels.dtype == np.uint16 and (low, high) == (-0.7, 1.3)
    assert pixels.min() == 0 and pixels.max() == 65535
    assert np.abs(heatmaps.decode_raw(pixels, low, high) - amap).max() <= (high - low) / 65535 / 2 + 1e-12
    flat, low, high = heatmaps.encode_raw(np.full((4, 4), 0.25))
    assert flat.max() == 0 and heatmaps.decode_raw(flat, low, high).max() == 0.25


def test_heat_map_drawing():
    size = 64
    yy, xx = np.mgrid[:size, :size]
    amap = np.where((yy - 40) ** 2 + (xx - 40) ** 2 <= 10 ** 2, 2.0, 0.0)    # a disc above the threshold
    image = np.full((size, size, 3), 0.5)
    calibration = heatmaps.Calibration(threshold=1.0, pixel_threshold=1.0, score_spread=0.5, pixel_spread=0.5)
    drawn = heatmaps.render(image, amap, 2.0, calibration)
    assert drawn.shape == (size, size, 3) and drawn.dtype == np.uint8
    assert tuple(drawn[40, 30]) == (255, 255, 255)          # the disc's left edge: contour
    assert tuple(drawn[40, 40]) != (255, 255, 255)          # inside: colour, no contour
    assert tuple(drawn[0, 0]) == (200, 0, 0)                 # the label box, red: anomalous
    assert tuple(heatmaps.render(image, amap, 0.0, calibration)[0, 0]) == (30, 30, 30)   # normal
    square = np.zeros((20, 20), dtype=bool)
    square[5:15, 5:15] = True
    assert heatmaps.contour(square).sum() == 4 * 10 - 4            # the ring of a 10 x 10 square
    assert heatmaps.contour(square, width=2).sum() == 36 + 4 * 8 - 4
    assert heatmaps.contour(np.ones((3, 3), dtype=bool)).sum() == 8  # the image border counts as outside


def test_jet_matches_matplotlib():
    from matplotlib import colormaps

    values = np.arange(256) / 255      # matplotlib's table of 256 colours, exact at these values
    assert np.abs(heatmaps.jet(values) - colormaps["jet"](values)[:, :3]).max() < 1e-6
