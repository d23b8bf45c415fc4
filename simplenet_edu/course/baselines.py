"""A baseline to measure SimpleNet against: nearest-neighbour distances to a memory bank of normal patches.

This is the idea of PatchCore (Roth et al., CVPR 2022), built on SimpleNet's own frozen patch features
(notebook 01): keep the patch features of the normal training images as a *memory bank*, and score a
test patch by its distance to the nearest one. Nothing is trained. A greedy *coreset* keeps a
fraction of the bank that still covers it (every dropped patch lies close to a kept one), which makes
the search cheaper with little loss.

It has the interface the rest of the package expects of a model (``fit``, ``predict``,
``resize_shape``, ``image_shape``, ``threshold_normal``), so :func:`simplenet_edu.evaluation.evaluator.evaluate`
scores it exactly as it scores SimpleNet: the same images, the same metrics, a threshold from normal
images it never saw (one held-out split: see :meth:`NearestNeighbourBaseline.fit`). It is a baseline
for the course, not PatchCore itself: PatchCore adds Wide-ResNet50 features, a locally aware patch
descriptor and an image score re-weighted by the neighbourhood of the nearest patch.

>>> baseline = NearestNeighbourBaseline(SimpleNetConfig.quick()).fit("data/demo/brick")   # doctest: +SKIP
>>> result = evaluate(baseline, "data/demo/brick")                                        # doctest: +SKIP
"""

from __future__ import annotations

import torch

from ..core.fitted import CalibrationPlan, FittedModel
from ..simplenet.config import SimpleNetConfig
from ..simplenet.local_aggregation import FeatureExtractor, LocalAggregation
from ..stages.backbones import load_backbone
from ..stages.nearest import nearest_distances
from ..utils.errors import InputError


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, size: int, start: int = 0, projection: int | None = 128,
                   seed: int = 0) -> torch.Tensor:
    """Indices ``[size]`` of a greedy k-centre coreset of ``features [M, D]`` (PatchCore's subsampling).

    Start from row ``start``; then, again and again, add the row farthest from everything chosen so far.
    The kept rows cover the bank: every row lies within the last added row's distance of one of them.
    ``projection``: distances are measured after a random linear map to this many dimensions (seeded;
    PatchCore does the same to save time); ``None`` uses the features as they are.
    """
    if not 1 <= size <= len(features):
        raise InputError("coreset size", f"must be between 1 and {len(features)}, got {size}")
    points = features.float()
    if projection is not None and projection < points.shape[1]:
        generator = torch.Generator().manual_seed(seed)
        matrix = torch.randn(points.shape[1], projection, generator=generator) / projection ** 0.5
        points = points @ matrix.to(points.device)
    # Squared distances as |x|^2 - 2 x.c + |c|^2: one matrix-vector product per added centre.
    norms = points.pow(2).sum(dim=1)                                            # [M]
    chosen = [start]
    nearest = (norms - 2 * points @ points[start] + norms[start]).clamp_min(0)  # [M] to the chosen set
    for _ in range(size - 1):
        farthest = int(nearest.argmax())
        chosen.append(farthest)
        nearest = torch.minimum(nearest, (norms - 2 * points @ points[farthest] + norms[farthest]).clamp_min(0))
    return torch.tensor(chosen)


class NearestNeighbourBaseline(FittedModel):
    """Patch score = distance to the nearest normal training patch (PatchCore's memory-bank idea).

    Args:
        config: the ``SimpleNetConfig`` whose frozen features to use (backbone, image size, aggregation,
            ``holdout_fraction``, ``normal_max_fpr``, ``smoothing_sigma``, ``seed``); default the CPU default.
        backbone: an already loaded backbone to share (with a SimpleNet trained on the same images).
        coreset: the share of the training patches kept in the memory bank (PatchCore: 0.1 or 0.01).

    After :meth:`fit`: ``bank [K, D]`` and what every model keeps
    (:class:`~simplenet_edu.core.fitted.FittedModel`: ``threshold_normal`` and ``pixel_threshold_normal``
    from held-out normal images, as SimpleNet's; ``n_train``, ``n_holdout``). :meth:`predict` returns
    image scores ``[B]`` (the highest patch distance) and anomaly maps ``[B, H, W]`` (the distances
    upsampled and smoothed exactly as SimpleNet's patch scores).
    """

    kind = "nearest-neighbour"
    config_class = SimpleNetConfig

    def __init__(self, config: SimpleNetConfig | None = None, backbone: torch.nn.Module | None = None,
                 coreset: float = 0.1):
        if not 0 < coreset <= 1:
            raise InputError("coreset", f"must be a share in (0, 1], got {coreset}")
        config = config or SimpleNetConfig()
        super().__init__(config)
        self.coreset = coreset
        if backbone is None:
            backbone = load_backbone(config.backbone, weights_path=config.weights_path, pretrained=config.pretrained)
        aggregation = LocalAggregation(config.pretrain_embed_dim, config.target_embed_dim, config.patch_size)
        self.extractor = FeatureExtractor(backbone, aggregation)
        self.bank: torch.Tensor | None = None
        self.to(self.device)

    @property
    def backbone(self) -> torch.nn.Module:
        return self.extractor.backbone

    def split_holdout(self, n: int) -> tuple[list[int], list[int]]:
        """``(train, held_out)``: always the single held-out split (:meth:`fit` says why)."""
        return self.held_out_split(n)

    def fit(self, data, progress: bool = False) -> "NearestNeighbourBaseline":
        """Build the memory bank from normal images (a folder, as :meth:`SimpleNet.fit`, or ``[N, 3, H, W]``).

        Its normal thresholds always come from one held-out split, the one SimpleNet makes with
        ``threshold_folds=0`` (same ``holdout_fraction`` and seed), whatever ``config.threshold_folds``
        says: a greedy coreset per fold would cost k more coresets, and nothing here is trained."""
        images = self.training_images(data)
        train, held = self.split_holdout(len(images))
        self.n_train, self.n_holdout = len(train), len(held)
        plan = CalibrationPlan("held-out", train, [held], set(held)) if held else CalibrationPlan("none", train)

        def build(images_in: list[int], shipped: bool) -> None:
            patches = torch.cat([self.extractor(batch.to(self.device))[0] for batch in images[images_in].split(8)])
            patches = patches.flatten(0, 1)                                                   # [N*h*w, D]
            keep = max(1, round(self.coreset * len(patches)))
            self.bank = patches if keep == len(patches) else \
                patches[greedy_coreset(patches, keep, seed=self.config.seed).to(patches.device)]
            self.fitted = True  # the bank is all it needs to score; the held-out images calibrate it

        self.fit_heads(plan, build, lambda held_in: [self.predict(images[held_in])], progress=progress)
        return self

    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, h, w]``: each patch's distance to its nearest neighbour in the bank."""
        self.check_fitted()
        features, grid = self.extractor(images.to(self.device))                  # [B, h*w, D]
        return nearest_distances(features.flatten(0, 1), self.bank).view(len(images), *grid)

    def batch_predictor(self):
        return lambda batch: self.outputs(self.patch_scores(batch), tuple(batch.shape[-2:]))
