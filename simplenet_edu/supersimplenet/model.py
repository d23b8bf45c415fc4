"""SuperSimpleNet (Rolih, Fucka, Skocaj; ICPR 2024, extended in JIMS 2025): SimpleNet's successor.

It keeps SimpleNet's frozen backbone, its shallow feature adaptor and its anomalies made in feature
space, and changes three things:

1. **features**: the two backbone layers are upscaled to *twice* the shallow layer's grid (bilinear;
   the CPU default keeps that grid, ``upscale=1``), stacked, and averaged over 3x3 neighbourhoods
   (``C = C_2 + C_3`` channels, no channel pooling); the adaptor is a 1x1 convolution, i.e.
   ``Linear(C, C)`` at every cell (:func:`upscaled_features`);
2. **anomalies**: the batch is doubled and Gaussian noise is added only inside Perlin-noise masks,
   which become the pixel labels (:mod:`.anomaly_generator`);
3. **heads**: a segmentation head (SimpleNet's discriminator, per cell) gives the anomaly map, and a
   classification head reads features and map to give the image score (:mod:`.heads`), trained with
   focal and truncated L1 losses (:mod:`.loss`).

With real defect masks for some training images it trains *supervised* as well (the paper's
"unifying" claim): the masks are merged into the labels. The layout it reads them from::

    <root>/train/good/*.png                          normal training images (always)
    <root>/train/<defect>/<name>.png                 anomalous training images (supervised mode)
    <root>/ground_truth/<defect>/<name>_mask.png     their masks: MVTec's own rule, as for test images

A training mask must not share its file with a test image's mask (same defect folder, same name):
that is reported as an error. Without ``train/<defect>`` folders training is unsupervised, as
SimpleNet's.

As in SimpleNet here, the frozen backbone runs **once per training image**: its two layer maps are
cached, and each training step rebuilds the upscaled features of its batch from the cache (two
interpolations and a 3x3 average: fixed, cheap, linear), then trains adaptor and heads. Evaluation
is honest: the model of the last step, and ``threshold_normal`` from the normal training images, each
scored by heads trained without it (out of fold).

``SuperSimpleNetConfig()`` is the CPU default; ``.paper()`` the paper's configuration (Wide-ResNet50,
256 px, 300 epochs of batch 32); ``.quick()`` a tiny one for tests and notebooks.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from ..core.fitted import CalibrationPlan, FittedModel, StepLog, even_sample, in_batches
from ..simplenet.anomaly_generator import noise_sigma
from ..simplenet.feature_adaptor import FeatureAdaptor
from ..stages.backbones import load_backbone
from ..utils.errors import InputError
from .anomaly_generator import PerlinAnomalyGenerator
from .config import SuperSimpleNetConfig
from .features import downsample_masks, upscaled_features
from .heads import SegmentationDetectionModule
from .loss import SuperSimpleNetLoss
from .training import lr_factor, read_anomalous_training_set, train_step


class SuperSimpleNet(FittedModel):
    """SuperSimpleNet with SimpleNet's interface: ``fit``, ``predict``, ``save``, ``load``.

    >>> model = SuperSimpleNet(SuperSimpleNetConfig.quick()).fit("data/demo/brick")   # doctest: +SKIP
    >>> scores, maps = model.predict(images)   # scores: sigmoid of the classification head  # doctest: +SKIP

    After ``fit``, besides what every model keeps (:class:`~simplenet_edu.core.fitted.FittedModel`):
    ``feature_std``, ``sigma``, ``supervised`` (whether real masks were used) and ``n_anomalous_train``.
    """

    kind = "supersimplenet"
    config_class = SuperSimpleNetConfig
    parts = ("adaptor", "head")
    state = (*FittedModel.state, "feature_std", "sigma", "supervised", "stop_grad", "n_anomalous_train")

    def __init__(self, config: SuperSimpleNetConfig | None = None, backbone: torch.nn.Module | None = None):
        config = config or SuperSimpleNetConfig()
        super().__init__(config)
        self.backbone = backbone if backbone is not None else load_backbone(
            config.backbone, weights_path=config.weights_path, pretrained=config.pretrained)
        torch.manual_seed(config.seed)  # after the backbone: the heads start alike, loaded or shared
        self.dim = sum(self.backbone.channels)
        self.adaptor = FeatureAdaptor(self.dim)          # Linear(C, C) per cell = the paper's 1x1 conv
        self.head = SegmentationDetectionModule(self.dim, config.seg_hidden, config.cls_channels,
                                                config.cls_kernel, stop_grad=True, cls_init=config.cls_init)
        self.generator: PerlinAnomalyGenerator | None = None
        self.supervised = False
        self.feature_std: float | None = None
        self.sigma: float | None = None
        self.n_anomalous_train = 0
        self.to(self.device)

    @property
    def stop_grad(self) -> bool:
        """Whether the classification head reads the map detached (unsupervised training)."""
        return self.head.stop_grad

    @stop_grad.setter
    def stop_grad(self, value: bool) -> None:
        self.head.stop_grad = value

    # ------------------------------------------------------------------ features
    def grid(self) -> tuple[int, int]:
        """``(H, W)``: the feature grid, ``upscale`` x the shallow layer's (stride 8) grid."""
        stride = self.backbone.strides[0]
        return tuple(math.ceil(s / stride) * self.config.upscale for s in self.image_shape)

    @torch.no_grad()
    def extract(self, images: torch.Tensor, batch_size: int = 8, progress: bool = False) -> list[torch.Tensor]:
        """The frozen backbone's layer maps of ``images [N, 3, H, W]``: ``[[N, C_l, h_l, w_l], ...]``
        on the model's device, in ``config.cache_dtype``: what training caches."""
        dtype = getattr(torch, self.config.cache_dtype)
        chunks = []
        for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress, leave=False):
            chunks.append([m.to(dtype) for m in self.backbone(images[start:start + batch_size].to(self.device))])
        return [torch.cat(layer) for layer in zip(*chunks)]

    def extract_source(self, source, images: list[int], progress: bool = False) -> list[torch.Tensor]:
        """:meth:`extract` of ``images`` of an :class:`~simplenet_edu.core.fitted.ImageSource`, read a
        batch at a time."""
        chunks = [self.extract(batch) for _, batch in tqdm(source.batches(images), total=math.ceil(len(images) / 8),
                                                          desc="features", disable=not progress, leave=False)]
        return [torch.cat(layer) for layer in zip(*chunks)]

    def features(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Layer maps -> ``[B, H, W, C]`` (:func:`upscaled_features`)."""
        return upscaled_features(maps, self.config.upscale, self.config.patch_size)

    # ------------------------------------------------------------------ training
    def fit(self, data, masks: torch.Tensor | None = None, progress: bool = True) -> "SuperSimpleNet":
        """Train; unsupervised unless real defect masks are given.

        ``data``: an MVTec-layout folder (``train/good``, plus ``train/<defect>`` with masks for the
        supervised mode: see the module docstring), a folder of images, or a tensor ``[N, 3, H, W]``
        in ``[0, 1]`` with optional ``masks [N, H, W]`` (a mask with any defect pixel makes its image
        anomalous). The thresholds come from the *normal* images scored by heads that never saw them:
        out of fold (``config.threshold_folds``, the default) or a held-out share
        (``threshold_folds=0``, ``config.holdout_fraction``). At most ``config.bank_images`` normal
        images are cached (an even, seeded sample of them beyond), so memory does not grow with the
        number of images.
        """
        source = self.training_source(data)
        defects, defect_masks = torch.zeros(0, 3, *self.image_shape), torch.zeros(0, *self.image_shape)
        if isinstance(data, torch.Tensor):
            masks = torch.zeros(len(source), *self.image_shape) if masks is None else masks.float()
            if masks.shape != (len(source), *self.image_shape):
                raise InputError("masks", f"expected [N, H, W] = {[len(source), *self.image_shape]}, "
                                          f"got {list(masks.shape)}")
            anomalous = masks.flatten(1).amax(dim=1).gt(0)
            normal_ids = (~anomalous).nonzero().flatten().tolist()
            defect_ids = anomalous.nonzero().flatten().tolist()
        else:
            normal_ids, defect_ids = list(range(len(source))), []
            if self.config.supervised == "auto":
                defects, defect_masks = read_anomalous_training_set(data, self.resize_shape, self.image_shape)

        kept = [normal_ids[i] for i in even_sample(len(normal_ids), self.config.bank_images, self.config.seed)]
        plan = self.calibration_plan(len(kept))
        in_train = set(plan.train)
        train = [kept[i] for i in plan.train]
        held = [kept[i] for fold in plan.folds for i in fold if i not in in_train]
        start = time.perf_counter()
        cache = [self.extract_source(source, group, progress) for group in (train, held) if group]
        if defect_ids or len(defects):   # the anomalous images train with the others, after them
            cache.insert(1, self.extract_source(source, defect_ids) if defect_ids else self.extract(defects))
        maps = [torch.cat(layer) for layer in zip(*cache)]
        self.timings["seconds_features"] = time.perf_counter() - start
        if isinstance(data, torch.Tensor):
            cache_masks = masks[train + defect_ids + held]
        else:
            cache_masks = torch.cat([torch.zeros(len(train), *self.image_shape), defect_masks,
                                     torch.zeros(len(held), *self.image_shape)])
        # Positions in the cache: the normal training images, the anomalous ones, the held-out ones.
        n_defects = len(maps[0]) - len(train) - len(held)
        position = {image: i for i, image in enumerate(kept[j] for j in plan.train)}
        position.update({image: len(train) + n_defects + i for i, image in enumerate(held)})
        plan.train = [position[kept[i]] for i in plan.train] + list(range(len(train), len(train) + n_defects))
        plan.folds = [[position[kept[i]] for i in fold] for fold in plan.folds]
        plan.scored = {position[kept[i]] for i in plan.scored}
        return self._fit_cache(maps, cache_masks, plan, progress)

    def fit_features(self, maps: list[torch.Tensor], masks: torch.Tensor | None = None,
                     holdout: list[torch.Tensor] | None = None, progress: bool = True) -> "SuperSimpleNet":
        """Train on cached layer maps from :meth:`extract` (what :meth:`fit` does after the backbone).

        ``masks [N, H_img, W_img]``: real defect masks of the training images (zeros or ``None``:
        unsupervised); ``holdout``: maps of held-out normal images, which then set the thresholds;
        without them, with ``config.threshold_folds`` (the default), the normal training images
        scored out of fold do.
        """
        n = len(maps[0])
        masks = torch.zeros(n, *self.image_shape) if masks is None else masks
        labels = masks.flatten(1).amax(dim=1).gt(0)
        normal = (~labels).nonzero().flatten().tolist()
        if holdout is not None:
            held = list(range(n, n + len(holdout[0])))
            plan = CalibrationPlan("held-out", list(range(n)), [held], set(held))
            maps = [torch.cat([m, h]) for m, h in zip(maps, holdout)]
            masks = torch.cat([masks, torch.zeros(len(held), *masks.shape[1:])])
        elif self.config.threshold_folds:
            plan = self.calibration_plan(len(normal))
            plan.folds = [[normal[i] for i in fold] for fold in plan.folds]
            plan.scored = {normal[i] for i in plan.scored}
            plan.train = list(range(n))
        else:
            plan = CalibrationPlan("none", list(range(n)))
        return self._fit_cache(maps, masks, plan, progress)

    def _fit_cache(self, maps: list[torch.Tensor], masks: torch.Tensor, plan, progress: bool) -> "SuperSimpleNet":
        """Heads, thresholds and spreads from the cached layer maps of every image ``plan`` names."""
        cfg = self.config
        train = plan.train
        grid = tuple(self.features([m[:1] for m in maps]).shape[1:3])
        cells = downsample_masks(masks, grid)
        labels = cells.flatten(1).amax(dim=1)
        self.supervised = bool(labels[train].any())
        self.n_train, self.n_anomalous_train = len(train), int(labels[train].sum())
        self.n_holdout = len(plan.folds[0]) if plan.method == "held-out" else 0
        self.head.stop_grad = (not self.supervised) if cfg.stop_grad is None else cfg.stop_grad
        bank = self._feature_bank(maps)
        with torch.no_grad():  # the noise scale follows the features: their std over all training cells
            sums = torch.zeros(2, dtype=torch.float64)
            for begin in range(0, len(train), 8):
                part = train[begin:begin + 8]
                chunk = (bank[part] if bank is not None else self.features([m[part] for m in maps])).double()
                sums += torch.stack([chunk.sum(), chunk.pow(2).sum()]).cpu()
            count = len(train) * grid[0] * grid[1] * self.dim
            self.feature_std = math.sqrt(max(sums[1].item() / count - (sums[0].item() / count) ** 2, 0.0))
        self.sigma = noise_sigma(cfg.noise_std, self.feature_std, cfg.noise_scale)
        self.generator = PerlinAnomalyGenerator(self.sigma, cfg.perlin_threshold, cfg.zero_prob)
        cells, labels = cells.to(self.device), labels.to(self.device)

        def train_heads(images: list[int], shipped: bool) -> None:
            started = time.perf_counter()
            whole = images == list(range(len(labels)))
            self._train(maps, cells, labels, progress and shipped, bank, None if whole else images)
            if shipped:
                self.timings["seconds_train"] = time.perf_counter() - started

        def score(images: list[int]):
            for begin in range(0, len(images), 8):
                part = images[begin:begin + 8]
                yield self.score_maps([m[part] for m in maps])

        in_sample = [i for i in train if not labels[i]]
        self.fit_heads(plan, train_heads, score, in_sample, progress)
        return self

    @torch.no_grad()
    def _feature_bank(self, maps: list[torch.Tensor]) -> torch.Tensor | None:
        """The upscaled features of all training images ``[N, H, W, C]`` (``cache_dtype``), when they take
        at most 4x the memory of the layer maps (the CPU default: 2.2x); else ``None`` and every step
        rebuilds its batch's features from the maps (the paper's 2x upscaled Wide-ResNet50: 8x)."""
        n = len(maps[0])
        one = self.features([m[:1] for m in maps])
        if one.numel() > 4 * sum(m[0].numel() for m in maps):
            return None
        dtype = getattr(torch, self.config.cache_dtype)
        return torch.cat([self.features([m[i:i + 8] for m in maps]).to(dtype) for i in range(0, n, 8)])

    def _train(self, maps, cells, labels, progress: bool, bank: torch.Tensor | None = None,
               images: list[int] | None = None) -> None:
        """``config.steps`` steps (or ``config.epochs`` passes) over the cached images (``images``: only these)."""
        cfg = self.config
        members = None if images is None else torch.tensor(images)
        n = len(labels) if members is None else len(members)
        batch = min(cfg.batch_size, n)
        per_pass = math.ceil(n / batch)
        log = StepLog.of_run(cfg, per_pass, progress)
        total = log.total
        # The authors step their schedule once per epoch: milestones fall on whole passes.
        milestones = ([int(f * cfg.epochs) * per_pass for f in cfg.lr_milestones] if cfg.epochs is not None
                      else [int(f * total) for f in cfg.lr_milestones])
        optimizer = torch.optim.AdamW([
            {"params": self.adaptor.parameters(), "lr": cfg.lr_adaptor},              # weight decay 0.01
            {"params": self.head.seg.parameters(), "lr": cfg.lr_seg, "weight_decay": 1e-5},
            {"params": self.head.cls.parameters(), "lr": cfg.lr_cls, "weight_decay": 1e-5},
        ], betas=(0.9, cfg.adam_beta2))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, milestones, cfg.lr_gamma))
        loss_fn = SuperSimpleNetLoss(cfg.margin, cfg.focal_gamma)
        clip = cfg.clip_grad if cfg.clip_grad is not None else (1.0 if self.supervised else None)
        order = torch.Generator().manual_seed(cfg.seed)
        random = (torch.Generator().manual_seed(cfg.seed + 1),
                  torch.Generator(self.device).manual_seed(cfg.seed + 2))
        self.train()
        queue = []
        for step in range(1, total + 1):
            if not queue:
                perm = torch.randperm(n, generator=order)
                queue = list((perm if members is None else members[perm]).split(batch))
            idx = queue.pop(0).to(self.device)
            features = bank[idx].float() if bank is not None else self.features([m[idx] for m in maps])
            values = train_step(self.adaptor, self.generator, self.head, loss_fn, optimizer, features,
                                cells[idx], labels[idx], cfg.cls_features, clip, random)
            schedule.step()
            row = log.add(step, values)
            if row is not None:
                row["lr_factor"] = lr_factor(step - 1, milestones, cfg.lr_gamma)
        self.history = log.close()
        self.eval()

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def heads(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer maps -> (anomaly logits ``[B, H, W]``, image logits ``[B]``)."""
        features = self.features(maps)
        adapted = self.adaptor(features)
        return self.head(adapted, features if self.config.cls_features == "backbone" else None)

    @torch.no_grad()
    def score_maps(self, maps: list[torch.Tensor], size: tuple[int, int] | None = None,
                   batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` on cached layer maps: image scores ``[B]`` (float64, the sigmoid of the
        classification head, as the paper) and anomaly maps ``[B, H, W]`` (the segmentation logits
        upsampled to ``size`` and smoothed with sigma ``smoothing_sigma``), on the CPU."""
        self.eval()
        size = size or self.image_shape

        def score(part: slice):
            anomaly_map, logit = self.heads([m[part] for m in maps])
            # float64: a float32 sigmoid rounds every logit above ~17 to exactly 1 (ties)
            return self.outputs(anomaly_map.float(), size, torch.sigmoid(logit.double()))

        return in_batches(score, len(maps[0]), batch_size)

    def batch_predictor(self):
        return lambda batch: self.score_maps(self.extract(batch, len(batch)), tuple(batch.shape[-2:]), len(batch))

    def restore(self, payload: dict) -> None:
        super().restore(payload)
        if self.sigma is not None:
            self.generator = PerlinAnomalyGenerator(self.sigma, self.config.perlin_threshold, self.config.zero_prob)
