"""SuperSimpleNet's segmentation-detection module: an anomaly map and an image score, two heads.

SimpleNet's discriminator scores each patch on its own, and its image score is the highest patch
score: one unlucky patch decides. SuperSimpleNet (Rolih et al., ICPR 2024) keeps that per-patch
scorer as its **segmentation head** and adds a **classification head** that looks at the whole image:

- segmentation head: ``1x1 conv (C -> hidden) - BatchNorm - LeakyReLU(0.2) - 1x1 conv (hidden -> 1)``,
  exactly SimpleNet's discriminator applied at every cell of the feature map (a 1x1 convolution *is*
  a linear layer applied at every cell), but trained to output *anomaly* logits (high = defect).
  It is :class:`simplenet_edu.simplenet.discriminator.Discriminator`, reused;
- classification head: the features and the anomaly map stacked (``C + 1`` channels), one
  ``5x5 conv (-> 128) - BatchNorm - ReLU`` block, then the maximum and the mean of that block's
  channels and of the anomaly map (``2 * 128 + 2`` numbers) into one ``Linear(258, 1)``: the image
  logit. It sees the size and shape of an anomalous region, not only its peak.

In the unsupervised setting the map enters the classification head *detached* (``stop_grad``): the
image loss cannot bend the segmentation head, whose labels (the Perlin masks) are the reliable ones.
Tensors are channels-last, ``[B, H, W, C]``, as the rest of simplenet-edu's patch features.
"""

from __future__ import annotations

import torch
from torch import nn

from ..simplenet.discriminator import Discriminator


class SegmentationHead(Discriminator):
    """``[B, H, W, C] -> [B, H, W]`` anomaly logits: SimpleNet's two-layer discriminator, per cell.

    Same layers, Xavier-normal init and fast BatchNorm as :class:`Discriminator`; only the meaning of
    the output is flipped (SuperSimpleNet trains it towards ``+margin`` on defects).
    """

    needs_grid = True

    def __init__(self, dim: int, hidden: int = 1024):
        super().__init__(dim, hidden, n_layers=2)


class ClassificationHead(nn.Module):
    """``(features [B, H, W, C], anomaly_map [B, H, W]) -> [B]`` image anomaly logits.

    ``Conv(C + 1 -> channels, kernel, 'same') - BatchNorm2d - ReLU``; global max and mean of its
    output and of the map; ``Linear(2 * channels + 2, 1)``.
    """

    def __init__(self, dim: int, channels: int = 128, kernel: int = 5, init: str = "xavier"):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError("the classification head's kernel must be odd (a 'same' convolution)")
        if init not in ("xavier", "map_max"):
            raise ValueError(f"init must be 'xavier' or 'map_max', not {init!r}")
        self.conv = nn.Sequential(nn.Conv2d(dim + 1, channels, kernel, padding=kernel // 2),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        self.fc = nn.Linear(2 * channels + 2, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
        if init == "map_max":
            # Start as SimpleNet's image score: the logit is the map's maximum, the rest learns from 0.
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.bias.zero_()
                self.fc.weight[0, 2 * channels] = 1.0

    def pooled(self, features: torch.Tensor, anomaly_map: torch.Tensor) -> torch.Tensor:
        """``[B, 2 * channels + 2]``: what the last linear layer reads."""
        stacked = torch.cat([features, anomaly_map.unsqueeze(-1)], dim=-1).permute(0, 3, 1, 2)
        conv = self.conv(stacked).flatten(2)                                          # [B, K, H*W]
        flat_map = anomaly_map.flatten(1)                                              # [B, H*W]
        return torch.cat([conv.amax(dim=2), conv.mean(dim=2),
                          flat_map.amax(dim=1, keepdim=True), flat_map.mean(dim=1, keepdim=True)], dim=1)

    def forward(self, features: torch.Tensor, anomaly_map: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(features, anomaly_map)).squeeze(1)


class SegmentationDetectionModule(nn.Module):
    """Both heads: ``(seg_features [B, H, W, C], cls_features [B, H, W, C]) -> (map [B, H, W], score [B])``,
    both logits (anomaly map before upsampling; the image score before its sigmoid).

    ``cls_features`` is ``seg_features`` in the ICPR paper (and the authors' repository); the JIMS
    extension passes the un-adapted features there instead. ``stop_grad``: the map is detached where the
    classification head reads it (unsupervised training).
    """

    def __init__(self, dim: int, seg_hidden: int = 1024, cls_channels: int = 128, cls_kernel: int = 5,
                 stop_grad: bool = True, cls_init: str = "xavier"):
        super().__init__()
        self.seg = SegmentationHead(dim, seg_hidden)
        self.cls = ClassificationHead(dim, cls_channels, cls_kernel, cls_init)
        self.stop_grad = stop_grad

    def forward(self, seg_features: torch.Tensor, cls_features: torch.Tensor | None = None):
        anomaly_map = self.seg(seg_features)
        cls_features = seg_features if cls_features is None else cls_features
        score = self.cls(cls_features, anomaly_map.detach() if self.stop_grad else anomaly_map)
        return anomaly_map, score
