"""SuperSimpleNet's anomaly generator: Gaussian noise inside Perlin-noise masks, mask returned.

SimpleNet noises every patch feature on its own, so its fakes are scattered points. SuperSimpleNet
(Rolih et al., ICPR 2024) makes fake *defects* instead: connected regions of the feature map, shaped
like the stains and scratches of real surfaces. Per image of a training batch:

1. draw 2-D Perlin noise on the feature grid, with a random lattice of ``2**ky x 2**kx`` cells
   (``k`` uniform in ``0 .. K-1``: from one blob across the whole image to blobs two cells wide;
   ``K = 6`` on the paper's 64 x 64 grid);
2. threshold it: the mask is where the noise exceeds ``threshold`` (0.2 for MVTec AD, 0.6 for VisA);
3. empty the mask with probability ``zero_prob`` (0.5), so that about half the fake images carry no
   defect at all and the classification head sees both kinds;
4. add Gaussian noise ``N(0, sigma^2)`` to the features *inside the mask only*.

Steps 1-3 are :func:`simplenet_edu.stages.perlin.perlin_masks`, which SimpleNet's ``perlin`` variant
draws its masks with too.

The batch is doubled first (each image once as it is, once with its own draw), and the mask becomes
the pixel label of the segmentation head: that is what lets one loss train the anomaly map directly.
Where real defect masks are given (the supervised mode), the synthetic noise is kept out of them and
the real mask is merged into the label.
"""

from __future__ import annotations

import torch
from torch import nn

from ..stages.perlin import perlin_masks


class PerlinAnomalyGenerator(nn.Module):
    """Double the batch and noise each copy inside its own Perlin mask.

    ``forward(features [B, H, W, C], masks [B, H, W] (real defects, 0/1), labels [B], extra=None)``
    returns ``(noised [2B, H, W, C], noised_extra or None, masks [2B, H, W] float 0/1, labels [2B]
    float 0/1)``. ``extra`` (same shape as ``features``) receives the *same* noise at the same places:
    the JIMS variant feeds the un-adapted features, noised alike, to the classification head.

    ``sigma`` is absolute (the paper: 0.015 for Wide-ResNet50 features); ``SuperSimpleNet`` sets it
    relative to the feature spread for other backbones, as :mod:`simplenet_edu.simplenet.anomaly_generator`
    explains for SimpleNet.
    """

    def __init__(self, sigma: float, threshold: float = 0.2, zero_prob: float = 0.5):
        super().__init__()
        if not 0.0 <= zero_prob <= 1.0:
            raise ValueError("zero_prob must be in [0, 1]")
        self.sigma, self.threshold, self.zero_prob = float(sigma), float(threshold), float(zero_prob)

    def forward(self, features: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                extra: torch.Tensor | None = None, generator: torch.Generator | None = None,
                noise_generator: torch.Generator | None = None):
        b, h, w, _ = features.shape
        features = torch.cat([features, features])
        masks, labels = torch.cat([masks, masks]).float(), torch.cat([labels, labels]).float()
        synthetic = perlin_masks(2 * b, h, w, self.threshold, self.zero_prob, generator).to(features.device)
        # Never on top of a real defect (the authors' "no overlap"): a real region keeps its real look.
        synthetic = synthetic & (masks == 0)
        # Gaussian noise drawn for the masked cells only (a sixth of them, typically): same result as
        # noising everything and masking, a fraction of the random numbers.
        noise = torch.zeros_like(features)
        inside = synthetic.nonzero(as_tuple=True)
        noise[inside] = torch.randn((len(inside[0]), features.shape[-1]), generator=noise_generator,
                                    device=features.device, dtype=features.dtype) * self.sigma
        masks = torch.maximum(masks, synthetic.float())
        labels = torch.maximum(labels, synthetic.flatten(1).any(dim=1).float())
        noised_extra = None if extra is None else torch.cat([extra, extra]) + noise
        return features + noise, noised_extra, masks, labels

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, threshold={self.threshold}, zero_prob={self.zero_prob}"
