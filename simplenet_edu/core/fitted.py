"""The fitted-model core: what every model of the package is once trained, whatever its features and heads.

A model here is trained on normal images only, then scores images: ``predict(images [B, 3, H, W]) ->
(scores [B], maps [B, H, W])``. :class:`FittedModel` holds everything that does not depend on how a
model makes its scores, so that SimpleNet, SuperSimpleNet and the nearest-neighbour baseline write it
once:

- **the training images** of a folder, checked whole before any model work and read as they are
  needed (:meth:`FittedModel.training_source`, :class:`ImageSource`);
- **which normal images set the thresholds** (:meth:`FittedModel.calibration_plan`): by default every
  one, each scored *out of fold* by heads trained without it (``config.threshold_folds = 5`` folds,
  seeded); with ``threshold_folds=0``, a single held-out share (``config.holdout_fraction``);
- **the numbers from normal images** (:meth:`FittedModel.fit_heads`, :meth:`FittedModel.calibrate`):
  ``threshold_normal`` and ``pixel_threshold_normal``, what they achieve on those images and a 95 %
  upper bound on the true false-positive rate (``calibration``), and the spreads of the normal scores
  and pixels that scale deployed scores (``normal_score_spread``, ``normal_pixel_spread``), all kept
  in bounded memory (:class:`~simplenet_edu.core.calibration.NormalScores`);
- **"is it fitted?"** (:meth:`FittedModel.check_fitted`), asked by ``predict`` and ``save``;
- **batched prediction** (:meth:`FittedModel.predict`), and the step from a grid of patch scores to
  an image score and a smoothed pixel map (:meth:`FittedModel.outputs`);
- **one checkpoint format** (:meth:`FittedModel.save`, :meth:`FittedModel.load`; see
  :mod:`simplenet_edu.core.checkpoint`);
- **the training run**: its length in steps or passes (:func:`training_steps`), and its history,
  about twenty rows with a progress bar (:class:`StepLog`).

A new model subclasses it and brings its own features, heads and training step: it sets ``kind``,
``config_class`` and ``parts`` (the trained modules a checkpoint stores), implements ``fit`` (its
features, then :meth:`fit_heads` with two functions: "train the heads on these images' cached
features" and "score these images' cached features") and :meth:`batch_predictor`, and registers its
kind with one line in :data:`simplenet_edu.core.registry.MODELS` (``ARCHITECTURE.md``: where a new
model goes).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Callable, ClassVar

import torch
from tqdm.auto import tqdm

from .. import data as data_lib
from ..evaluation.localization import anomaly_maps
from ..utils.device import resolve_device
from ..utils.errors import InputError
from ..utils.stats import nanmean
from .calibration import CalibrationPlan, NormalScores, Outputs, even_sample, normal_folds  # noqa: F401 (their home)
from .checkpoint import checkpoint_kind, read_checkpoint, write_checkpoint

SHAPES = ("resize_shape", "image_shape")


# ------------------------------------------------------------------ the training images, read as needed


class ImageSource:
    """The normal training images, read when they are needed: ``len``, ``load(indices) -> [B, 3, H, W]``.

    From a checked folder's paths (each file read and resized on demand: thousands of images never
    sit in memory at once), a tensor ``[N, 3, H, W]`` (sliced), or a data set of dicts with ``"image"``.
    """

    def __init__(self, paths: Sequence[Path] | None = None, shapes: tuple | None = None,
                 tensor: torch.Tensor | None = None, dataset=None):
        self.paths, self.shapes, self.tensor, self.dataset = paths, shapes, tensor, dataset

    def __len__(self) -> int:
        for items in (self.paths, self.tensor, self.dataset):
            if items is not None:
                return len(items)
        return 0

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """``[len(indices), 3, H, W]`` float32 in ``[0, 1]``."""
        indices = list(indices)
        if self.tensor is not None:
            return self.tensor[indices].float()
        if self.dataset is not None:
            return torch.stack([self.dataset[i]["image"] for i in indices]).float()
        return torch.stack([data_lib.load_image(self.paths[i], *self.shapes) for i in indices])

    def batches(self, indices: Sequence[int], batch_size: int = 8) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(indices, images [B, 3, H, W])`` of ``indices``, ``batch_size`` at a time, in their order."""
        indices = list(indices)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            yield chunk, self.load(chunk)


class FittedModel(torch.nn.Module):
    """Base class of the models: the fitted state, thresholds, batched predict, checkpoints.

    After ``fit``: ``threshold_normal`` and ``pixel_threshold_normal`` (from normal images scored by
    heads that never trained on them: out of fold, or held out), ``calibration`` (what they claim:
    :func:`~simplenet_edu.evaluation.metrics.calibration_record`), ``normal_scores`` (those images' scores), ``normal_score_spread`` and
    ``normal_pixel_spread`` (:func:`~simplenet_edu.utils.stats.robust_spread` of the normal scores and
    pixels), ``n_train`` (images the shipped heads trained on), ``n_holdout`` (images held out of them),
    ``history`` and ``timings``. ``resize_shape`` and ``image_shape`` (both ``(height, width)``) are the
    resize and the model's input: load images for a model with
    ``data.load_image(path, model.resize_shape, model.image_shape)``.
    """

    kind: ClassVar[str] = ""                    # the name in the registry and in checkpoints
    config_class: ClassVar[type] = object
    parts: ClassVar[tuple[str, ...]] = ()       # trained modules whose weights a checkpoint stores
    state: ClassVar[tuple[str, ...]] = (        # attributes a checkpoint stores (subclasses add theirs)
        "threshold_normal", "pixel_threshold_normal", "normal_score_spread", "normal_pixel_spread",
        "calibration", "normal_scores", "n_train", "n_holdout", "timings", *SHAPES)

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.device = resolve_device(config.device)
        # (height, width) of the resized image and of the model's input (its centre crop).
        self.resize_shape, self.image_shape = data_lib.input_shapes(config.image_size, config.crop_size)
        self.fitted = False
        self.threshold_normal: float | None = None
        self.pixel_threshold_normal: float | None = None
        self.normal_score_spread: float | None = None
        self.normal_pixel_spread: float | None = None
        self.calibration: dict | None = None
        self.normal_scores: list[float] = []
        self.n_train = self.n_holdout = 0
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ training images
    @property
    def strides(self) -> tuple[int, ...]:
        """The backbone's strides, shallowest first (a model with a backbone overrides this)."""
        return self.backbone.strides

    def training_source(self, data) -> ImageSource:
        """The normal training images of ``data``, read as they are needed (:class:`ImageSource`).

        A folder is checked whole first (:func:`~simplenet_edu.data.check_dataset`: every problem
        reported before any model work); where ``config.keep_aspect`` keeps it (``True``, or ``"auto"`` for
        images at least 1.5 x as long as wide: :func:`~simplenet_edu.data.keeps_aspect`), its training
        images' median aspect ratio fixes ``resize_shape`` and ``image_shape``. A tensor ``[N, 3, H, W]`` is the model's input
        as it is (the model takes its size); a data set of dicts gives its ``"image"`` entries.
        """
        cfg = self.config
        if isinstance(data, (str, Path)):
            check = data_lib.check_dataset(data, image_size=cfg.image_size, crop_size=cfg.crop_size,
                                           backbone=cfg.backbone)
            if data_lib.keeps_aspect(getattr(cfg, "keep_aspect", False), check.aspect(), cfg.image_size):
                self.resize_shape, self.image_shape = data_lib.aspect_shapes(
                    cfg.image_size, cfg.crop_size, check.aspect(), multiple=max(self.strides))
            return ImageSource(paths=check.train, shapes=(self.resize_shape, self.image_shape))
        if isinstance(data, torch.Tensor):
            images = data
        elif len(data) and isinstance(data[0], dict) and isinstance(data[0].get("image"), torch.Tensor):
            first = data[0]["image"]
            if first.ndim != 3 or first.shape[0] != 3:
                raise InputError("images", f"expected images [3, H, W], got shape {list(first.shape)}")
            self._take_size(tuple(first.shape[-2:]))
            return ImageSource(dataset=data)
        else:
            images = torch.stack([item["image"] for item in data])
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError("images", f"expected a tensor [N, 3, H, W], got shape {list(images.shape)}")
        self._take_size(tuple(images.shape[-2:]))
        return ImageSource(tensor=images)

    def _take_size(self, size: tuple[int, int]) -> None:
        if size != tuple(self.image_shape):  # the grid follows the images given
            self.resize_shape = self.image_shape = size

    def training_images(self, data) -> torch.Tensor:
        """``[N, 3, H, W]`` normal training images in ``[0, 1]``, all in memory (``fit`` reads them
        through :meth:`training_source` instead, a batch at a time)."""
        source = self.training_source(data)
        return source.load(range(len(source)))

    def split_holdout(self, n: int) -> tuple[list[int], list[int]]:
        """Indices ``(train, held_out)`` of ``n`` normal images: with ``config.threshold_folds`` (the
        default) every image trains the shipped heads and none is held out, since the thresholds come
        from out-of-fold scores; with ``threshold_folds=0``, :meth:`held_out_split`."""
        if getattr(self.config, "threshold_folds", 0):
            return list(range(n)), []
        return self.held_out_split(n)

    def held_out_split(self, n: int) -> tuple[list[int], list[int]]:
        """``(train, held_out)``: ``config.holdout_fraction`` of ``n`` normal images, chosen by seed, held
        out of training to set the normal thresholds; none when there are fewer than two images."""
        if self.config.holdout_fraction <= 0 or n < 2:
            return list(range(n)), []
        return data_lib.split_holdout(range(n), self.config.holdout_fraction, self.config.seed)

    def calibration_plan(self, n: int, max_scored: int | None = None) -> CalibrationPlan:
        """Which of ``n`` normal images train the shipped heads and which set the thresholds.

        ``config.threshold_folds = k >= 2``: all ``n`` train the shipped heads, and ``min(k, n)`` seeded
        folds (:func:`~simplenet_edu.core.calibration.normal_folds`) each get heads trained on the other folds, which score them: every
        normal image is scored by heads that never saw it. ``0``: one held-out split
        (:meth:`held_out_split`). ``max_scored``: at most this many images are scored (an even, seeded
        sample of them, spread over the folds), to bound memory on thousands of images.
        """
        k = getattr(self.config, "threshold_folds", 0)
        if n < 2:
            return CalibrationPlan("none", list(range(n)))
        if k:
            plan = CalibrationPlan("out-of-fold", list(range(n)), normal_folds(n, k, self.config.seed))
        else:
            train, held = self.held_out_split(n)
            if not held:
                return CalibrationPlan("none", train)
            plan = CalibrationPlan("held-out", train, [held])
        candidates = sorted(i for fold in plan.folds for i in fold)
        keep = even_sample(len(candidates), max_scored or len(candidates), self.config.seed)
        plan.scored = {candidates[i] for i in keep}
        if plan.method == "held-out":    # held-out images that are not scored are not held out
            plan.folds = [[i for i in plan.folds[0] if i in plan.scored]]
            plan.train = [i for i in range(n) if i not in plan.scored]
        return plan

    # ------------------------------------------------------------------ the numbers from normal images
    def head_start(self) -> dict:
        """The heads' initial weights and the random state, to train them again from the same start
        (:meth:`restart_heads`): every fold's heads and the shipped ones start alike."""
        state = {"parts": {name: copy.deepcopy(getattr(self, name).state_dict())
                           for name in self.parts if getattr(self, name, None) is not None},
                 "cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def restart_heads(self, start: dict) -> None:
        for name, values in start["parts"].items():
            getattr(self, name).load_state_dict(values)
        torch.set_rng_state(start["cpu"])
        if "cuda" in start:
            torch.cuda.set_rng_state(start["cuda"], self.device)

    def fit_heads(self, plan: CalibrationPlan, train: Callable[[list[int], bool], None],
                  score: Callable[[list[int]], Iterable[Outputs]], in_sample: Sequence[int] = (),
                  progress: bool = True) -> None:
        """Train the heads and set the normal thresholds from images they never trained on.

        ``train(images, shipped)`` trains this model's heads on the cached features of ``images`` (a
        list of indices into the plan), from the start they had when this was called;
        ``score(images)`` yields ``(scores [B], maps [B, H, W])`` of those images' cached features.
        Out of fold: for each fold, heads trained on the other folds score its images; then the heads
        that are kept train on every image (``shipped=True``). Held out: the shipped heads train on the
        training share and score the held-out images; ``in_sample`` images (trained on) add to the
        spreads only (and alone where there is no threshold). ``timings["seconds_folds"]``: the folds'
        training and scoring.
        """
        pixels = self.image_shape[0] * self.image_shape[1]
        n_spread = plan.n_scored + (len(in_sample) if plan.method != "out-of-fold" else 0)
        normal = NormalScores(self.config.normal_max_fpr, pixels, plan.n_scored, n_spread)
        if plan.method == "out-of-fold":
            started = time.perf_counter()
            start = self.head_start()
            for fold in tqdm(plan.folds, desc="threshold folds", disable=not progress, leave=False):
                taken = set(fold)
                self.restart_heads(start)
                train([i for i in plan.train if i not in taken], False)
                normal.add(score(plan.fold_scored(fold)))
            self.restart_heads(start)
            self.timings["seconds_folds"] = time.perf_counter() - started
        train(plan.train, True)
        if plan.method == "held-out":
            normal.add(score(plan.folds[0]))
        if plan.method != "out-of-fold" and in_sample:
            normal.add(score(list(in_sample)), threshold=False)
        self.calibrate(normal, plan)

    def calibrate(self, normal: NormalScores, plan: CalibrationPlan) -> None:
        """Set the normal thresholds, their record (``calibration``) and the spreads from the normal
        scores of ``normal``; the model is then fitted.

        The spreads scale the normalised score of deployed predictions (:mod:`simplenet_edu.deploy.heatmaps`):
        a display scale, never a decision, and never from test images.
        """
        self.threshold_normal, self.pixel_threshold_normal = normal.thresholds()
        self.normal_score_spread, self.normal_pixel_spread = normal.spreads()
        self.normal_scores = normal.image_scores().tolist()
        self.calibration = None
        if self.threshold_normal is not None:
            folds = len(plan.folds) if plan.method == "out-of-fold" else None
            self.calibration = normal.record(self.threshold_normal, self.pixel_threshold_normal, plan.method, folds)
        self.fitted = True

    def check_fitted(self) -> None:
        """A one-line :class:`InputError` unless the model has been fitted (or loaded)."""
        if not self.fitted:
            raise InputError("model", f"this {type(self).__name__} is not trained yet: call fit() first")

    # ------------------------------------------------------------------ prediction
    def batch_predictor(self) -> Callable[[torch.Tensor], Outputs]:
        """The function that scores one batch ``[B, 3, H, W]`` on the model's device: ``(scores [B],
        maps [B, H, W])`` on the CPU. Built once per :meth:`predict` call (a model may prepare its
        weights for inference here)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 8) -> Outputs:
        """``images [B, 3, H, W]`` in ``[0, 1]`` -> image scores ``[B]`` and anomaly maps ``[B, H, W]``
        (on the CPU). Higher means more anomalous."""
        self.check_fitted()
        self.eval()
        predict_batch = self.batch_predictor()
        return in_batches(lambda part: predict_batch(images[part].to(self.device)), len(images), batch_size)

    def outputs(self, grid: torch.Tensor, size: tuple[int, int], image_scores: torch.Tensor | None = None) -> Outputs:
        """Patch scores ``[B, h, w]`` -> ``(image scores [B], maps [B, H, W])`` on the CPU: the image
        score is ``image_scores`` when given, else the highest patch score; the map is the grid
        upsampled to ``size = (H, W)`` and smoothed (:func:`~simplenet_edu.evaluation.localization.anomaly_maps`)."""
        scores = grid.flatten(1).amax(dim=1) if image_scores is None else image_scores
        return scores.cpu(), anomaly_maps(grid, size, self.config.smoothing_sigma).cpu()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trained parts, configuration, state and history (not the frozen backbone, which is
        rebuilt from its source), atomically."""
        self.check_fitted()
        parts = {name: getattr(self, name).state_dict() for name in self.parts if getattr(self, name) is not None}
        state = {key: getattr(self, key) for key in self.state}
        return write_checkpoint(path, {"model": self.kind, "config": self.config.to_dict(), **parts,
                                       "state": state, "history": self.history})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None):
        """Load a checkpoint written by :meth:`save` (another model's file gets a one-line error)."""
        payload = read_checkpoint(path)
        kind = checkpoint_kind(payload)
        if kind != cls.kind:
            raise InputError(path, f"is a {kind} checkpoint, not a {cls.kind} one: load it with "
                                   "simplenet_edu.load_model, which reads the kind from the file")
        config = cls.config_class.from_dict(payload["config"])
        model = cls(config if device is None else config.replace(device=device))
        for key, value in payload["state"].items():
            setattr(model, key, tuple(value) if key in SHAPES else value)
        model.restore(payload)
        model.history = list(payload.get("history", []))
        model.fitted = True
        model.eval()
        return model

    def restore(self, payload: dict) -> None:
        """Load the trained parts' weights from a checkpoint's payload (after its state is set)."""
        for name in self.parts:
            if payload.get(name) is not None:
                getattr(self, name).load_state_dict(payload[name])


def in_batches(score: Callable[[slice], Outputs], n: int, batch_size: int = 8) -> Outputs:
    """``score`` applied to ``slice``s of ``n`` items, ``batch_size`` at a time; the outputs concatenated."""
    results = [score(slice(start, start + batch_size)) for start in range(0, n, batch_size)]
    return torch.cat([s for s, _ in results]), torch.cat([m for _, m in results])


def training_steps(config, steps_per_pass: int) -> int:
    """A run's length in optimiser steps: ``config.steps``, or ``config.epochs`` whole passes of
    ``steps_per_pass`` steps when the budget is given in passes (the papers' schedules)."""
    return config.steps if config.epochs is None else config.epochs * steps_per_pass


class StepLog:
    """The training history of a run of ``total`` steps, with its progress bar.

    A row every ``every`` steps (and at the last step, and wherever ``add(..., row=True)`` asks): the
    step, the pass it falls in (``epoch``, in passes of ``steps_per_pass`` steps), and the mean of each
    value over the steps since the previous row (NaN-aware: a step whose Perlin masks were all empty
    has no fakes). ``every`` defaults to about twenty rows over the run.
    """

    def __init__(self, total: int, steps_per_pass: int, every: int | None = None, progress: bool = True):
        self.total, self.steps_per_pass = total, steps_per_pass
        self.every = every or max(1, math.ceil(total / 20))
        self.rows: list[dict] = []
        self._window: list[dict] = []
        self._bar = tqdm(total=total, desc="train steps", disable=not progress)

    @classmethod
    def of_run(cls, config, steps_per_pass: int, progress: bool = True) -> "StepLog":
        """The log of the run ``config`` budgets (:func:`training_steps`): about twenty rows, or one
        per pass when the budget is given in passes."""
        every = steps_per_pass if config.epochs is not None else None
        return cls(training_steps(config, steps_per_pass), steps_per_pass, every, progress)

    def add(self, step: int, values: dict, row: bool = False) -> dict | None:
        """Record step ``step`` (counted from 1); the new row when one is due, else ``None``. The
        caller may add keys to the row it gets (validation scores)."""
        self._window.append(values)
        self._bar.update()
        if not (row or step % self.every == 0 or step == self.total):
            return None
        means = {key: nanmean([v[key] for v in self._window]) for key in self._window[0]}
        self.rows.append({"step": step, "epoch": step / self.steps_per_pass, **means})
        self._bar.set_postfix(loss=f"{means['loss']:.3f}")
        self._window = []
        return self.rows[-1]

    def close(self) -> list[dict]:
        """End the progress bar; the rows."""
        self._bar.close()
        return self.rows
