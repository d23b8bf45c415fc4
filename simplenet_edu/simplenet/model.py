"""SimpleNet (Liu et al., CVPR 2023), the whole model: ``SimpleNet(config).fit(images).predict(images)``.

Read top to bottom, this file is the method; each stage lives in its own module of this folder:

1. a frozen backbone (:mod:`~simplenet_edu.stages.backbones`) and local aggregation
   (:mod:`.local_aggregation`) turn each image into patch features ``[B, h*w, D]``, computed once per
   training image and cached;
2. the feature adaptor re-mixes them (:mod:`.feature_adaptor`; the CPU default leaves them as they are);
3. the anomalous feature generator adds Gaussian noise to make fakes (:mod:`.anomaly_generator`;
   ``fakes="painted"`` also takes cells of painted copies of the training images,
   :mod:`.anomaly_generator_painted`);
4. the discriminator (:mod:`.discriminator`) learns to tell them apart with the paper's truncated L1
   loss, or BCE in the CPU default (:mod:`.loss`); one update is :func:`~.training.train_step`;
5. at test time ``-D(adapted feature)`` scores each patch; the image score is the maximum, the
   anomaly map the upsampled, smoothed score grid (:mod:`~simplenet_edu.evaluation.localization`).

What every model shares (thresholds from normal images scored out of fold, batched prediction,
checkpoints) comes from :class:`~simplenet_edu.core.fitted.FittedModel`. Each part can be swapped for a variant
(``SimpleNetConfig(generator="perlin")``...; the list is in :mod:`.variants`). ``SimpleNetConfig.paper()``
uses the paper's choice of every part; the CPU default ``SimpleNetConfig()`` is explained in its docstring.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from tqdm.auto import tqdm

from ..core.fitted import CalibrationPlan, FittedModel, StepLog, even_sample, in_batches
from ..stages.backbones import load_backbone
from ..utils.errors import InputError
from . import variants
from .anomaly_generator import noise_sigma
from .anomaly_generator_painted import paint_training_set
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
        ``Dataset`` of dicts with ``"image"``, or a tensor ``[N, 3, H, W]`` in ``[0, 1]``. The thresholds
        come from normal images scored by heads that never saw them: out of fold
        (``config.threshold_folds``, the default), or a held-out share (``threshold_folds=0``,
        ``config.holdout_fraction``). The backbone runs once per image, a batch at a time; the
        training patches kept are at most ``config.bank_patches`` (:meth:`stream_features`), so memory
        does not grow with the number of images.
        """
        source = self.training_source(data)
        grid = self.grid()
        plan = self.calibration_plan(len(source), max_scored=max(1, self.config.bank_patches // (grid[0] * grid[1])))
        start = time.perf_counter()
        bank, bank_images, full = self.stream_features(source, plan, progress)
        self.timings["seconds_features"] = time.perf_counter() - start
        validation = None
        if plan.method == "held-out" and self.config.val_checkpoints > 0:
            painted = painted_validation_set(source.load(plan.folds[0][: self.config.val_images]), self.config.seed)
            validation = (painted, self.extract(painted.images, layers=self.adaptor.reads_layers))
        in_sample = bank_images if bank.shape[1] == grid[0] * grid[1] else []   # whole grids: scored for the spread
        painting = None
        if self.config.fakes == "painted":
            start = time.perf_counter()
            at_hand = {image: bank[row] for row, image in enumerate(in_sample)}
            # As many copies as the bank holds whole grids: memory stays bounded on large sets.
            most = max(2, self.config.bank_patches // (grid[0] * grid[1]))
            chosen = [plan.train[i] for i in even_sample(len(plan.train), most, self.config.seed)]
            painting = paint_training_set(source.load, lambda images: self.extract(images), chosen, grid,
                                          self.config.seed, clean=at_hand.get, progress=progress)
            self.timings["seconds_painting"] = time.perf_counter() - start
        return self._fit_bank(bank, bank_images, full, grid, plan, in_sample, progress, validation, painting)

    @torch.no_grad()
    def stream_features(self, source, plan, progress: bool = True):
        """One pass of the backbone over the training images, a batch at a time: ``(bank, bank_images, full)``.

        ``bank [N_b, P_b, F]``: the training patches the heads learn from, at most ``config.bank_patches``
        rows: every patch of every training image when they fit; beyond, the same number of patches from
        every image, drawn at random (seeded), or for the variants that need whole grids, every patch of
        an even sample of the images. ``bank_images``: the image of each of its rows of patches.
        ``full``: ``{image: [P, F]}``, every patch of the images that set the thresholds (``plan.scored``).
        """
        cfg = self.config
        layers = self.adaptor.reads_layers
        h, w = self.grid()
        patches, capacity = h * w, cfg.bank_patches
        train = plan.train
        rows = patches
        if len(train) * patches <= capacity:
            bank_images = list(train)
        elif variants.needs_grid(cfg):
            bank_images = [train[i] for i in even_sample(len(train), max(2, capacity // patches), cfg.seed)]
        else:
            bank_images, rows = list(train), max(1, capacity // len(train))
        position = {image: i for i, image in enumerate(bank_images)}
        in_train = set(train)
        held = [i for fold in plan.folds for i in fold if i not in in_train]
        wanted = [i for i in train if i in position or i in plan.scored]
        dtype = getattr(torch, cfg.cache_dtype)
        pick = torch.Generator().manual_seed(cfg.seed)
        bank, full = None, {}
        bar = tqdm(total=len(wanted) + len(held), desc="features", disable=not progress, leave=False)
        for group in (wanted, held):   # the training images, then the held-out ones (as extract would)
            for chunk, images in source.batches(group):
                features = (layer_features(self.extractor, images.to(self.device))[0] if layers
                            else self.extractor(images.to(self.device))[0])              # [B, P, F]
                if bank is None:
                    bank = torch.empty(len(bank_images), rows, features.shape[-1], dtype=dtype, device=self.device)
                for image, one in zip(chunk, features):
                    if image in position:
                        keep = one if rows == patches else one[torch.randperm(patches, generator=pick)[:rows].sort().values]
                        bank[position[image]] = keep.to(dtype)
                    if image in plan.scored and (rows != patches or image not in position):
                        full[image] = one.to(dtype, copy=True)   # not a view that keeps the batch alive
                bar.update(len(chunk))
        bar.close()
        if bank is None:
            raise InputError("images", "no training image to fit on")
        if rows == patches:   # whole grids in the bank: the images that set the thresholds are read from it
            full.update({image: bank[position[image]] for image in plan.scored if image in position})
        return bank, bank_images, full

    def fit_features(self, bank: torch.Tensor, grid: tuple[int, int], holdout: torch.Tensor | None = None,
                     progress: bool = True, validation: "tuple[ValidationSet, torch.Tensor] | None" = None,
                     ) -> "SimpleNet":
        """Train the heads on precomputed features (what :meth:`fit` does after the backbone).

        ``bank [N, h*w, F]``: the training images' features from :meth:`extract` (``F = D``; the
        ``conv`` adaptor reads ``layers=True`` features), on the ``grid = (h, w)``; ``holdout``: the
        same for held-out normal images, which then set the thresholds (the single held-out split);
        without it, with ``config.threshold_folds`` (the default), the bank's own images scored out of
        fold do; ``validation``: a :class:`~simplenet_edu.simplenet.validation.ValidationSet` and its
        features, scored at ``config.val_checkpoints`` points of the run. Lets an ablation extract once
        and train many heads.
        """
        n = len(bank)
        images = list(range(n))
        if holdout is not None:
            held = list(range(n, n + len(holdout)))
            plan = CalibrationPlan("held-out", images, [held], set(held))
            full = {**{i: bank[i] for i in images}, **{n + j: holdout[j] for j in range(len(holdout))}}
        elif self.config.threshold_folds:
            plan = self.calibration_plan(n)
            full = {i: bank[i] for i in images}
        else:
            plan, full = CalibrationPlan("none", images), {i: bank[i] for i in images}
        if self.config.fakes == "painted":
            raise InputError("fakes", "'painted' paints the training images: use fit (fit_features has their "
                                      "features only)")
        if plan.method == "out-of-fold" and validation is not None:
            raise InputError("validation", "needs held-out images (threshold_folds=0 and a holdout)")
        return self._fit_bank(bank, images, full, grid, plan, images, progress, validation)

    def _fit_bank(self, bank: torch.Tensor, bank_images: list[int], full: dict, grid: tuple[int, int], plan,
                  in_sample: list[int], progress: bool, validation=None, painting=None) -> "SimpleNet":
        """Heads, thresholds and spreads from a bank of training patches (:meth:`stream_features`);
        ``painting``: the painted training images (``fakes="painted"``)."""
        cfg = self.config
        start = time.perf_counter()
        # The noise scale follows the patch features, whichever form the adaptor reads.
        self.feature_std = (aggregate(bank, cfg.target_embed_dim) if self.adaptor.reads_layers else bank).float().std().item()
        bank = bank.to(self.device, getattr(torch, cfg.cache_dtype))
        self.sigma = noise_sigma(cfg.noise_std, self.feature_std, cfg.noise_scale)
        self.generator = variants.make_generator(cfg, self.sigma).to(self.device)
        self.timings.setdefault("seconds_features", time.perf_counter() - start)
        self.n_train = len(plan.train)
        self.n_holdout = len(plan.folds[0]) if plan.method == "held-out" else 0
        position = {image: i for i, image in enumerate(bank_images)}

        def train(images: list[int], shipped: bool) -> None:
            started = time.perf_counter()
            rows = [position[i] for i in images if i in position]
            painted = None if painting is None else \
                painting.cells(images, self.sigma * bank.shape[-1] ** 0.5, cfg.seed)
            self._train(bank, grid, progress and shipped, validation if shipped else None,
                        None if len(rows) == len(bank) else rows, painted)
            if shipped:
                self.timings["seconds_train"] = time.perf_counter() - started

        def score(images: list[int]):
            for begin in range(0, len(images), 8):
                # The images that set the thresholds, or (spreads) training images whose whole grid is in the bank.
                features = torch.stack([full[i] if i in full else bank[position[i]] for i in images[begin:begin + 8]])
                yield self._outputs(self.feature_scores(features, grid), self.image_shape)

        self.fit_heads(plan, train, score, in_sample, progress)
        return self

    def _train(self, bank: torch.Tensor, grid: tuple[int, int], progress: bool, validation=None,
               images: list[int] | None = None, painted=None) -> None:
        """The training loop: ``config.steps`` optimiser steps (or ``config.epochs`` passes) over the
        cached ``bank`` (``images``: only these of its images); the painted ``validation`` set, if any,
        scored at ``config.val_checkpoints`` rows; ``painted``: the
        :class:`~.anomaly_generator_painted.PaintedCells` each step adds ``batch_size / 2`` of."""
        cfg = self.config
        optimizers = make_optimizers(cfg, self.adaptor, self.discriminator, self.generator)
        loss_fn = variants.make_loss(cfg)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        draw = torch.Generator().manual_seed(cfg.seed)
        needs_grid = self.generator.needs_grid or self.discriminator.needs_grid
        batches = GridBatches(bank, grid, cfg.batch_size, shuffle, images) if needs_grid \
            else PatchBatches(bank, cfg.batch_size, shuffle, images)
        log = StepLog.of_run(cfg, len(batches), progress)
        total = log.total
        schedulers = [make_schedule(opt, cfg.lr_schedule, total) for opt in optimizers]
        checkpoints = set() if validation is None else checkpoint_steps(total, log.every, cfg.val_checkpoints)
        best = None                                                    # (val_score, step, heads)
        self.train()
        for step, batch in enumerate(endless(batches, total), start=1):
            cells = None if painted is None else \
                tuple(part.to(self.device) for part in painted.draw(cfg.batch_size // 2, draw))
            values = train_step(self.adaptor, self.generator, self.discriminator, optimizers, batch, loss_fn, cells)
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
