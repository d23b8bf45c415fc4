"""SimpleNet (Liu et al., CVPR 2023), the whole model: ``SimpleNet(config).fit(images).predict(images)``.

Read top to bottom, this file is the method; each stage lives in its own module of this folder:

1. a frozen backbone (:mod:`~simplenet_edu.stages.backbones`) and local aggregation
   (:mod:`.local_aggregation`) turn each image into patch features ``[B, h*w, D]``, computed once per
   training image and cached;
2. the feature adaptor re-mixes them (:mod:`.feature_adaptor`; the CPU default leaves them as they are);
3. the anomalous feature generator adds Gaussian noise to make fakes (:mod:`.anomaly_generator`);
4. the discriminator (:mod:`.discriminator`) learns to tell them apart with the paper's truncated L1
   loss, or BCE in the CPU default (:mod:`.loss`); one update is :func:`~.training.train_step`;
5. at test time ``-D(adapted feature)`` scores each patch; the image score is the maximum, the
   anomaly map the upsampled, smoothed score grid (:mod:`~simplenet_edu.evaluation.localization`).

What every model shares (thresholds from held-out normal images, batched prediction, checkpoints)
comes from :class:`~simplenet_edu.core.fitted.FittedModel`. Each part can be swapped for a variant
(``SimpleNetConfig(generator="perlin")``...; the list is in :mod:`.variants`). ``SimpleNetConfig.paper()``
uses the paper's choice of every part; the CPU default ``SimpleNetConfig()`` is explained in its docstring.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from tqdm.auto import tqdm

from ..core.fitted import FittedModel, StepLog, in_batches
from ..stages.backbones import load_backbone
from . import variants
from .anomaly_generator import noise_sigma
from .batches import GridBatches, PatchBatches, endless
from .config import SimpleNetConfig
from .folded import FoldedScorer
from .local_aggregation import FeatureExtractor, LocalAggregation, aggregate, layer_features
from .training import make_optimizers, make_schedule, train_step
from .validation import ValidationSet, checkpoint_steps, painted_validation_set, validation_scores


class SimpleNet(FittedModel):
    """SimpleNet with a scikit-learn-like interface.

    >>> model = SimpleNet(SimpleNetConfig.quick()).fit("data/demo/brick")   # doctest: +SKIP
    >>> scores, maps = model.predict(images)                                 # doctest: +SKIP

    After ``fit``, besides what every model keeps (:class:`~simplenet_edu.core.fitted.FittedModel`:
    thresholds, spreads, ``history``, ``timings``): ``feature_std`` (of the training patch features),
    ``sigma`` (the absolute noise scale used) and ``selected_step`` (the step whose heads were kept:
    the last, unless ``select="validation"``).
    """

    kind = "simplenet"
    config_class = SimpleNetConfig
    parts = ("adaptor", "discriminator", "generator")
    state = (*FittedModel.state, "feature_std", "sigma", "selected_step")

    def __init__(self, config: SimpleNetConfig | None = None, backbone: torch.nn.Module | None = None):
        """``backbone``: one already loaded for this configuration, to share between models (the
        ablation); by default it is loaded from ``config.backbone``."""
        config = config or SimpleNetConfig()
        super().__init__(config)
        if backbone is None:
            backbone = load_backbone(config.backbone, weights_path=config.weights_path, pretrained=config.pretrained)
        torch.manual_seed(config.seed)  # after the backbone: the heads start alike, loaded or shared
        aggregation = LocalAggregation(config.pretrain_embed_dim, config.target_embed_dim, config.patch_size)
        self.extractor = FeatureExtractor(backbone, aggregation)
        self.adaptor = variants.make_adaptor(config, n_layers=len(backbone.channels))
        self.discriminator = variants.make_discriminator(config)
        self.image_score = variants.make_image_score(config)
        self.generator = None                 # built by fit, once the noise scale is known
        self.feature_std: float | None = None
        self.sigma: float | None = None
        self.selected_step: int | None = None
        self.to(self.device)

    @property
    def backbone(self) -> torch.nn.Module:
        return self.extractor.backbone

    # ------------------------------------------------------------------ features
    def extract(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False,
                layers: bool = False) -> torch.Tensor:
        """Patch features of ``images [N, 3, H, W]``: ``[N, h*w, D]`` on the model's device
        (``layers=True``: the per-layer features ``[N, h*w, L * pretrain_embed_dim]`` of
        :func:`layer_features`)."""
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            batch = images[start:start + batch_size].to(self.device)
            chunks.append(layer_features(self.extractor, batch)[0] if layers else self.extractor(batch)[0])
        return torch.cat(chunks)

    def grid(self) -> tuple[int, int]:
        """``(h, w)``: the patch grid of one image (the shallowest layer's stride, 8)."""
        h, w = self.image_shape
        stride = self.extractor.backbone.strides[0]
        return math.ceil(h / stride), math.ceil(w / stride)

    # ------------------------------------------------------------------ training
    def fit(self, data, progress: bool = True) -> "SimpleNet":
        """Train on normal images only.

        ``data``: an MVTec-layout folder (its ``train/good`` is used), a folder of images, a
        ``Dataset`` of dicts with ``"image"``, or a tensor ``[N, 3, H, W]`` in ``[0, 1]``.
        ``config.holdout_fraction`` of the images is held out (by seed) to set ``threshold_normal``.
        """
        images = self.training_images(data)
        train, held = self.split_holdout(len(images))
        self.n_train, self.n_holdout = len(train), len(held)
        layers = self.adaptor.reads_layers
        start = time.perf_counter()
        bank = self.extract(images[train], progress=progress, layers=layers)        # [N, h*w, F] cached
        self.timings["seconds_features"] = time.perf_counter() - start
        holdout = self.extract(images[held], layers=layers) if held else None
        validation = None
        if held and self.config.val_checkpoints > 0:
            painted = painted_validation_set(images[held][: self.config.val_images], self.config.seed)
            validation = (painted, self.extract(painted.images, layers=layers))
        return self.fit_features(bank, self.grid(), holdout, progress, validation)

    def fit_features(self, bank: torch.Tensor, grid: tuple[int, int], holdout: torch.Tensor | None = None,
                     progress: bool = True, validation: "tuple[ValidationSet, torch.Tensor] | None" = None,
                     ) -> "SimpleNet":
        """Train the heads on precomputed features (what :meth:`fit` does after the backbone).

        ``bank [N, h*w, F]``: the training images' features from :meth:`extract` (``F = D``; the
        ``conv`` adaptor reads ``layers=True`` features), on the ``grid = (h, w)``; ``holdout``: the
        same for held-out normal images, which set ``threshold_normal``; ``validation``: a
        :class:`~simplenet_edu.simplenet.validation.ValidationSet` and its features, scored at
        ``config.val_checkpoints`` points of the run. Lets an ablation extract once and train many heads.
        """
        cfg = self.config
        start = time.perf_counter()
        # The noise scale follows the patch features, whichever form the adaptor reads.
        self.feature_std = (aggregate(bank, cfg.target_embed_dim) if self.adaptor.reads_layers else bank).std().item()
        bank = bank.to(self.device, getattr(torch, cfg.cache_dtype))
        self.sigma = noise_sigma(cfg.noise_std, self.feature_std, cfg.noise_scale)
        self.generator = variants.make_generator(cfg, self.sigma).to(self.device)
        self.timings.setdefault("seconds_features", time.perf_counter() - start)

        start = time.perf_counter()
        self._train(bank, grid, progress, validation)
        self.timings["seconds_train"] = time.perf_counter() - start
        self.calibrate([self.score_features(bank, grid)], None if holdout is None else self.score_features(holdout, grid))
        return self

    def _train(self, bank: torch.Tensor, grid: tuple[int, int], progress: bool, validation=None) -> None:
        """The training loop: ``config.steps`` optimiser steps (or ``config.epochs`` passes) over the
        cached ``bank``; the painted ``validation`` set, if any, scored at ``config.val_checkpoints`` rows."""
        cfg = self.config
        optimizers = make_optimizers(cfg, self.adaptor, self.discriminator, self.generator)
        loss_fn = variants.make_loss(cfg)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        needs_grid = self.generator.needs_grid or self.discriminator.needs_grid
        batches = GridBatches(bank, grid, cfg.batch_size, shuffle) if needs_grid \
            else PatchBatches(bank, cfg.batch_size, shuffle)
        log = StepLog.of_run(cfg, len(batches), progress)
        total = log.total
        schedulers = [make_schedule(opt, cfg.lr_schedule, total) for opt in optimizers]
        checkpoints = set() if validation is None else checkpoint_steps(total, log.every, cfg.val_checkpoints)
        best = None                                                    # (val_score, step, heads)
        self.train()
        for step, batch in enumerate(endless(batches, total), start=1):
            values = train_step(self.adaptor, self.generator, self.discriminator, optimizers, batch, loss_fn)
            for schedule in schedulers:
                schedule.step()
            row = log.add(step, values, row=step in checkpoints)
            if step in checkpoints:
                row.update(self._validate(validation, grid))
                if best is None or row["val_score"] >= best[0]:
                    best = (row["val_score"], step, self._head_state())
        self.history = log.close()
        self.selected_step = total
        if cfg.select == "validation" and best is not None:
            self.selected_step = best[1]
            self._load_head_state(best[2])
        self.eval()

    def _validate(self, validation, grid: tuple[int, int]) -> dict:
        """Scores on the painted validation set (``validation.py``), without disturbing training."""
        painted, features = validation
        scores, maps = self.score_features(features, grid)
        self.train()
        return validation_scores(painted.labels, painted.masks, scores.numpy(), maps.numpy())

    def _head_state(self) -> dict:
        return {name: copy.deepcopy(getattr(self, name).state_dict()) for name in self.parts}

    def _load_head_state(self, state: dict) -> None:
        for name, values in state.items():
            getattr(self, name).load_state_dict(values)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor, folded: "FoldedScorer | None" = None) -> torch.Tensor:
        """Anomaly score of every patch: ``[B, 3, H, W] -> [B, h, w]`` (``-D(adaptor(feature))``).

        ``folded``: a :class:`FoldedScorer` of this trained model, the same numbers faster."""
        use_amp = self.config.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            images = images.to(self.device)
            if folded is not None:
                return folded(self.extractor.backbone(images))
            features, grid = layer_features(self.extractor, images) if self.adaptor.reads_layers \
                else self.extractor(images)
            return self.feature_scores(features, grid)

    @torch.no_grad()
    def feature_scores(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch anomaly scores from precomputed features: ``[B, h*w, F] -> [B, h, w]``."""
        grids = features.to(self.device).float().view(len(features), *grid, features.shape[-1])
        return -self.discriminator(self.adaptor(grids)).float()

    @torch.no_grad()
    def score_features(self, features: torch.Tensor, grid: tuple[int, int], size: tuple[int, int] | None = None,
                       batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` on precomputed features ``[B, h*w, F]``: image scores ``[B]`` and anomaly
        maps ``[B, H, W]`` (``size = (H, W)``, default the model's input size), on the CPU."""
        self.eval()
        size = size or self.image_shape
        return in_batches(lambda part: self._outputs(self.feature_scores(features[part], grid), size),
                          len(features), batch_size)

    def batch_predictor(self):
        folded = FoldedScorer.of(self)   # folded once per predict call: the trained weights are fixed
        return lambda batch: self._outputs(self.patch_scores(batch, folded), tuple(batch.shape[-2:]))

    def _outputs(self, grid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch scores ``[B, h, w]`` -> this configuration's image score and the smoothed maps."""
        return self.outputs(grid, size, self.image_score(grid.flatten(1)))

    def restore(self, payload: dict) -> None:
        if self.sigma is not None:  # the generator is made for the noise scale, then gets its weights
            self.generator = variants.make_generator(self.config, self.sigma).to(self.device)
        super().restore(payload)
