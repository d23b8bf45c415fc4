"""keep_aspect="auto": the aspect ratio kept from a long side of 1.5 x the short one, True / False forcing it."""

import pytest
from PIL import Image

from simplenet_edu.data import AUTO_ASPECT, check_dataset, keeps_aspect


@pytest.mark.parametrize("aspect, kept", [
    (768 / 576, False),      # cookie's portraits, 1.33
    (1.0, False),
    (1 / 1.49, False),
    (1.5, True),             # exactly the switch: kept
    (1 / 1.5, True),         # landscape strips (height / width below 1) count the same
    (256 / 1024, True),
])
def test_auto_keeps_the_aspect_from_one_and_a_half(aspect, kept):
    assert AUTO_ASPECT == 1.5
    assert keeps_aspect("auto", aspect, 256) is kept


def test_forced_and_fixed_shapes():
    assert keeps_aspect(True, 1.0, 256) is True          # forced on, even for squares
    assert keeps_aspect(False, 4.0, 256) is False        # forced off, even for long strips
    assert keeps_aspect("auto", 4.0, (256, 1024)) is False   # a (height, width) pair fixes the shape


def test_auto_on_a_folder_of_strips(tmp_path):
    train = tmp_path / "strips" / "train" / "good"
    train.mkdir(parents=True)
    for i, (w, h) in enumerate([(512, 256), (512, 300), (512, 340), (512, 512), (600, 300)]):
        Image.new("RGB", (w, h), (i * 40, 90, 120)).save(train / f"{i}.png")
    aspect = check_dataset(tmp_path / "strips").aspect()   # median height / width: 300 / 512 -> 1.71 long
    assert aspect == pytest.approx(300 / 512)
    assert keeps_aspect("auto", aspect, 256)


def _folder(root, sizes):
    train = root / "train" / "good"
    train.mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (i * 40, 90, 120)).save(train / f"{i}.png")
    return root


@pytest.mark.parametrize("setting, sizes, shape", [
    ("auto", [(512, 256)] * 3, (128, 256)),      # 2 : 1 strips: kept (short side 128, long 256)
    ("auto", [(576, 768)] * 3, (128, 128)),      # cookie-like 4 : 3 portraits: squashed
    (False, [(512, 256)] * 3, (128, 128)),       # forced off
    (True, [(576, 768)] * 3, (176, 128)),        # forced on
])
def test_fit_input_shape_follows_the_setting(tmp_path, setting, sizes, shape):
    from simplenet_edu import SimpleNet, SimpleNetConfig

    model = SimpleNet(SimpleNetConfig.quick(keep_aspect=setting, device="cpu"))
    model.training_source(_folder(tmp_path / "set", sizes))
    assert tuple(model.image_shape) == shape


def test_cli_keep_aspect_switches():
    import argparse

    from simplenet_edu.apps.options import add_model_options, build_config

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    assert build_config(parser.parse_args([])).keep_aspect == "auto"
    assert build_config(parser.parse_args(["--keep-aspect"])).keep_aspect is True
    assert build_config(parser.parse_args(["--no-keep-aspect"])).keep_aspect is False
    assert build_config(parser.parse_args(["--fakes", "painted"])).fakes == "painted"
