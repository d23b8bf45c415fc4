"""Non-square inputs: ``image_size`` as (height, width), ``keep_aspect``, crops, masks and the model's grid,
checked against shapes worked out by hand (cookie-like 576 x 768 portrait images: width 576, height 768)."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from simplenet_edu import SimpleNet, SimpleNetConfig
from simplenet_edu.apps.cli import main
from simplenet_edu.data import MVTecDataset, aspect_shapes, input_shapes, load_image
from simplenet_edu.utils.errors import InputError


def ramp(width: int, height: int) -> Image.Image:
    """Red encodes the column, green the row (both mod 256)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 0] = (np.arange(width) % 256)[None, :]
    pixels[..., 1] = (np.arange(height) % 256)[:, None]
    return Image.fromarray(pixels)


# --- sizes by hand -----------------------------------------------------------------------------


def test_input_shapes():
    assert input_shapes(256) == ((256, 256), (256, 256))
    assert input_shapes((96, 128)) == ((96, 128), (96, 128))
    assert input_shapes(329, 288) == ((329, 329), (288, 288))
    # An int crop of a non-square size shrinks both sides alike: 411 * 288 / 329 = 359.8 -> 360.
    assert input_shapes((329, 411), 288) == ((329, 411), (288, 360))
    assert input_shapes((100, 200), (50, 60)) == ((100, 200), (50, 60))
    for size, crop in (((0, 5), None), ((1, 2, 3), None), (1.5, None), ((64, 64), 65), ((64, 80), (70, 10))):
        with pytest.raises(InputError):
            input_shapes(size, crop)


def test_aspect_shapes_for_cookie_like_portraits():
    # 576 x 768 (w x h): aspect 4/3. Short side 256 -> long 256 * 4/3 = 341.3; 256 + 16 * round(85.3 / 16) = 336.
    assert aspect_shapes(256, None, 768 / 576) == ((336, 256), (336, 256))
    # 128 -> 170.7; 128 + 16 * round(42.7 / 16) = 128 + 48 = 176.
    assert aspect_shapes(128, None, 768 / 576) == ((176, 128), (176, 128))
    assert aspect_shapes(128, None, 576 / 768) == ((128, 176), (128, 176))  # landscape: width is the long side
    assert aspect_shapes(256, None, 1.0) == ((256, 256), (256, 256))
    assert aspect_shapes(329, None, 1.0) == ((329, 329), (329, 329))     # square stays square at any size
    # The paper's 329 -> 288: model input 288 x (288 + 16 * round(96 / 16)) = 288 x 384; the resize keeps the
    # crop's share on both sides: 384 * 329 / 288 = 438.7 -> 439.
    assert aspect_shapes(329, 288, 768 / 576) == ((439, 329), (384, 288))
    # A strip 8 times longer than wide: 64 + 16 * round(448 / 16) = 512.
    assert aspect_shapes(64, None, 1 / 8) == ((64, 512), (64, 512))


# --- images and masks --------------------------------------------------------------------------


def test_load_image_takes_height_then_width(tmp_path):
    ramp(40, 20).save(path := tmp_path / "wide.png")   # 40 wide, 20 high
    image = load_image(path, (20, 40))                   # its own size: no resampling
    assert image.shape == (3, 20, 40)
    assert image[0, 0, 39] * 255 == pytest.approx(39) and image[1, 19, 0] * 255 == pytest.approx(19)
    assert load_image(path, (10, 30)).shape == (3, 10, 30)


def test_non_square_centre_crop_starts_where_computed(tmp_path):
    ramp(411, 329).save(path := tmp_path / "ramp.png")
    image = load_image(path, (329, 411), 288)
    assert image.shape == (3, 288, 360)
    # top = (329 - 288) // 2 = 20, left = (411 - 360) // 2 = 25.
    assert image[0, 0, 0] * 255 == pytest.approx(25) and image[1, 0, 0] * 255 == pytest.approx(20)
    assert image[0, 0, 359] * 255 == pytest.approx((25 + 359) % 256)
    assert image[1, 287, 0] * 255 == pytest.approx((20 + 287) % 256)


def test_masks_follow_their_images_exactly(tmp_path):
    """A bright rectangle and its mask, resized and cropped to a non-square input: the mask covers
    exactly the bright pixels."""
    width, height = 96, 64
    pixels = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    pixels[8:24, 60:92] = 255   # rows 8..23, columns 60..91
    mask[8:24, 60:92] = 255
    for split, kind in (("train", "good"), ("test", "good"), ("test", "dent")):
        (tmp_path / split / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / split / kind / "000.png")
    (tmp_path / "ground_truth/dent").mkdir(parents=True)
    Image.fromarray(mask).save(tmp_path / "ground_truth/dent/000_mask.png")
    # Halve to 32 x 48 (h x w), then crop 24 x 36 (int crop 24 of short side 32: 48 * 24 / 32 = 36).
    item = MVTecDataset(tmp_path, "test", image_size=(32, 48), crop_size=24)[0]
    assert item["image"].shape == (3, 24, 36) and item["mask"].shape == (24, 36)
    # Halved: rows 4..11, columns 30..45; cropped by top 4, left 6: rows 0..7, columns 24..35.
    expected = torch.zeros(24, 36)
    expected[0:8, 24:36] = 1
    assert torch.equal(item["mask"], expected)
    assert torch.equal(item["image"][0] > 0.5, expected.bool())
    assert MVTecDataset(tmp_path, "test", image_size=(32, 48), crop_size=24)[1]["mask"].shape == (24, 36)


# --- the model ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cookies(tmp_path_factory):
    """A tiny cookie-like set: 576 x 768 portrait images (width x height), one masked defect."""
    root = tmp_path_factory.mktemp("cookies")
    rng = np.random.default_rng(0)
    for split, kind, count in (("train", "good", 5), ("test", "good", 2), ("test", "broken", 2)):
        (root / split / kind).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(100, 140, (768, 576, 3), dtype=np.uint8)
            if kind == "broken":
                pixels[300:420, 200:330] = 0
                mask = np.zeros((768, 576), np.uint8)
                mask[300:420, 200:330] = 255
                (root / "ground_truth/broken").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / f"ground_truth/broken/{i}_mask.png")
            Image.fromarray(pixels).save(root / split / kind / f"{i}.png", compress_level=1)
    return root


def test_keep_aspect_fixes_the_shape_at_fit_and_saves_it(cookies, tmp_path):
    config = SimpleNetConfig.quick(keep_aspect=True, steps=5, device="cpu")
    model = SimpleNet(config)
    assert model.image_shape == (128, 128)  # before fit: the square of image_size
    model.fit(cookies, progress=False)
    assert model.resize_shape == model.image_shape == (176, 128)
    assert model.grid() == (22, 16)          # stride 8
    scores, maps = model.predict(torch.rand(2, 3, 176, 128))
    assert scores.shape == (2,) and maps.shape == (2, 176, 128)
    loaded = SimpleNet.load(model.save(tmp_path / "m.pt"))
    assert loaded.image_shape == (176, 128) and loaded.resize_shape == (176, 128)
    assert torch.equal(loaded.predict(torch.ones(1, 3, 176, 128))[0], model.predict(torch.ones(1, 3, 176, 128))[0])


def test_keep_aspect_needs_a_single_size():
    with pytest.raises(InputError, match="keep_aspect"):
        SimpleNet(SimpleNetConfig.quick(image_size=(128, 160), keep_aspect=True))


def test_pair_size_survives_json_and_checkpoints():
    config = SimpleNetConfig.quick(image_size=(96, 128))
    again = SimpleNetConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.image_size == (96, 128) and again == config


def test_cli_keep_aspect_evaluate_and_predict(cookies, tmp_path, capsys):
    fast = ["--preset", "quick", "--steps", "5", "--device", "cpu"]
    output = tmp_path / "r.json"
    assert main(["--quiet", "evaluate", "--data", str(cookies), *fast, "--keep-aspect", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["config"]["keep_aspect"] is True and report["pixel_auroc"] is not None

    checkpoint = tmp_path / "m.pt"
    assert main(["--quiet", "train", "--data", str(cookies), *fast, "--keep-aspect", "--output", str(checkpoint)]) == 0
    out_dir = tmp_path / "pred"
    assert main(["--quiet", "predict", "--checkpoint", str(checkpoint), "--images", str(cookies / "test/broken"),
                 "--output-dir", str(out_dir), "--device", "cpu"]) == 0
    row = next(csv.DictReader((out_dir / "scores.csv").open()))
    assert Image.open(out_dir / row["heatmap"]).size == (576, 768)  # the photo's own size (PIL: width x height)
    model_dir = tmp_path / "pred_model"
    assert main(["--quiet", "predict", "--checkpoint", str(checkpoint), "--images", str(cookies / "test/broken"),
                 "--output-dir", str(model_dir), "--device", "cpu", "--map-size", "model"]) == 0
    row = next(csv.DictReader((model_dir / "scores.csv").open()))
    assert Image.open(model_dir / row["heatmap"]).size == (128, 176)  # the kept-aspect model input
    capsys.readouterr()


def test_cli_image_size_height_then_width(cookies, tmp_path, capsys):
    checkpoint = tmp_path / "m.pt"
    assert main(["--quiet", "train", "--data", str(cookies), "--preset", "quick", "--steps", "5", "--device", "cpu",
                 "--image-size", "96", "64", "--output", str(checkpoint)]) == 0
    model = SimpleNet.load(checkpoint)
    assert model.config.image_size == (96, 64) and model.image_shape == (96, 64) and model.grid() == (12, 8)
    code = main(["--quiet", "train", "--data", str(cookies), "--image-size", "96", "64", "32"])
    assert code == 2 and "--image-size: takes one positive integer (a square) or two" in capsys.readouterr().err
