"""SimpleNet's scorer at inference, with its linear stages folded into one convolution per backbone layer.

``predict`` and the ONNX export both use it: the same scores as the stage-by-stage path up to
rounding, without building the ``[B*h*w, D]`` matrix of patch features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .discriminator import Discriminator
from .feature_adaptor import FeatureAdaptor, IdentityAdaptor
from .local_aggregation import resize_to_grid


class FoldedScorer:
    """The trained paper model at inference, with its linear stages folded into one convolution.

    Local aggregation, the adaptor, the discriminator's first linear layer and its BatchNorm (in
    evaluation mode an affine map) are all linear, and so is their chain: for each backbone layer one
    3x3 convolution ``[H, C_l, 3, 3]`` and one bias give the discriminator's hidden activations
    directly. Only the LeakyReLU and the last ``Linear(H, 1)`` remain. Same scores as
    ``-D(adaptor(aggregate(maps)))`` up to rounding, without the ``[B*h*w, D]`` feature matrix.
    ``of(model)`` returns ``None`` for the variants that do not fold (conv adaptor or discriminator).
    """

    def __init__(self, kernels: list[torch.Tensor], bias: torch.Tensor, head: torch.Tensor, slope: float,
                 padding: int):
        self.kernels, self.bias, self.head, self.slope, self.padding = kernels, bias, head, slope, padding

    @classmethod
    @torch.no_grad()
    def of(cls, model) -> "FoldedScorer | None":
        adaptor, disc = model.adaptor, model.discriminator
        if not isinstance(adaptor, (FeatureAdaptor, IdentityAdaptor)) or type(disc) is not Discriminator \
                or len(disc.body) != 3 or disc.training:
            return None
        linear, norm, act = disc.body
        dim = model.config.target_embed_dim
        if isinstance(adaptor, FeatureAdaptor):
            a_weight, a_bias = adaptor.linear.weight, adaptor.linear.bias
        else:
            a_weight = torch.eye(dim, device=model.device)
            a_bias = torch.zeros(dim, device=model.device)
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)                        # BatchNorm, eval
        weight = scale[:, None] * (linear.weight @ a_weight)                                   # [H, D]
        bias = scale * (linear.weight @ a_bias + linear.bias - norm.running_mean) + norm.bias  # [H]
        aggregation = model.extractor.aggregation
        kernels = [(weight @ k.to(weight).flatten(1)).view(len(weight), *k.shape[1:])
                   for k in aggregation.kernels(model.extractor.backbone.channels)]
        return cls(kernels, bias, disc.tail.weight[0], act.negative_slope,
                   (aggregation.patch_size - 1) // 2)

    def __call__(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Backbone maps ``[[B, C_l, h_l, w_l], ...]`` -> patch anomaly scores ``[B, h, w]``."""
        grid = tuple(maps[0].shape[-2:])
        hidden = self.bias.view(1, -1, 1, 1).to(maps[0])
        for fmap, kernel in zip(maps, self.kernels):
            hidden = hidden + resize_to_grid(F.conv2d(fmap, kernel.to(fmap), padding=self.padding), grid)
        hidden = F.leaky_relu(hidden, self.slope)                                              # [B, H, h, w]
        return -torch.einsum("bhyx,h->byx", hidden, self.head.to(hidden)).float()
