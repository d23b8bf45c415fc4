"""The fitted-model core: what every model of the package is once trained, whatever its features and heads.

A model here is trained on normal images only, then scores images: ``predict(images [B, 3, H, W]) ->
(scores [B], maps [B, H, W])``. :class:`FittedModel` holds everything that does not depend on how a
model makes its scores, so that SimpleNet, SuperSimpleNet and the nearest-neighbour baseline write it
once:

- **the training images** of a folder, checked whole before any model work, and the held-out share
  of them (:meth:`FittedModel.training_images`, :meth:`FittedModel.split_holdout`);
- **the numbers from normal images** (:meth:`FittedModel.calibrate`): ``threshold_normal`` and
  ``pixel_threshold_normal`` from the held-out normal images, and the spreads of the normal scores
  and pixels that scale deployed scores (``normal_score_spread``, ``normal_pixel_spread``);
- **"is it fitted?"** (:meth:`FittedModel.check_fitted`), asked by ``predict`` and ``save``;
- **batched prediction** (:meth:`FittedModel.predict`), and the step from a grid of patch scores to
  an image score and a smoothed pixel map (:meth:`FittedModel.outputs`);
- **one checkpoint format** (:meth:`FittedModel.save`, :meth:`FittedModel.load`; see
  :mod:`simplenet_edu.core.checkpoint`);
- **the training run**: its length in steps or passes (:func:`training_steps`), and its history,
  about twenty rows with a progress bar (:class:`StepLog`).

A new model subclasses it and brings its own features, heads and training step: it sets ``kind``,
``config_class`` and ``parts`` (the trained modules a checkpoint stores), implements ``fit`` (ending
with :meth:`calibrate`) and :meth:`batch_predictor`, and registers its kind with one line in
:data:`simplenet_edu.core.registry.MODELS` (``ARCHITECTURE.md``: where a new model goes).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, ClassVar

import torch
from tqdm.auto import tqdm

from .. import data as data_lib
from ..evaluation.localization import anomaly_maps
from ..evaluation.metrics import threshold_from_normal
from ..utils.device import resolve_device
from ..utils.errors import InputError
from ..utils.stats import nanmean, robust_spread
from .checkpoint import checkpoint_kind, read_checkpoint, write_checkpoint

Outputs = tuple[torch.Tensor, torch.Tensor]      # (image scores [B], anomaly maps [B, H, W])
SHAPES = ("resize_shape", "image_shape")


class FittedModel(torch.nn.Module):
    """Base class of the models: the fitted state, thresholds, batched predict, checkpoints.

    After ``fit``: ``threshold_normal`` and ``pixel_threshold_normal`` (from held-out normal images),
    ``normal_score_spread`` and ``normal_pixel_spread`` (:func:`~simplenet_edu.utils.stats.robust_spread`
    of the scores of every normal image fitted on), ``n_train``, ``n_holdout``, ``history`` and
    ``timings``. ``resize_shape`` and ``image_shape`` (both ``(height, width)``) are the resize and the
    model's input: load images for a model with ``data.load_image(path, model.resize_shape, model.image_shape)``.
    """

    kind: ClassVar[str] = ""                    # the name in the registry and in checkpoints
    config_class: ClassVar[type] = object
    parts: ClassVar[tuple[str, ...]] = ()       # trained modules whose weights a checkpoint stores
    state: ClassVar[tuple[str, ...]] = (        # attributes a checkpoint stores (subclasses add theirs)
        "threshold_normal", "pixel_threshold_normal", "normal_score_spread", "normal_pixel_spread",
        "n_train", "n_holdout", "timings", *SHAPES)

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
        self.n_train = self.n_holdout = 0
        self.history: list[dict] = []
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ training images
    @property
    def strides(self) -> tuple[int, ...]:
        """The backbone's strides, shallowest first (a model with a backbone overrides this)."""
        return self.backbone.strides

    def training_images(self, data) -> torch.Tensor:
        """``[N, 3, H, W]`` normal training images in ``[0, 1]``.

        A folder is checked whole first (:func:`~simplenet_edu.data.check_dataset`: every problem
        reported before any model work); with ``config.keep_aspect`` its training images' median aspect
        ratio fixes ``resize_shape`` and ``image_shape``. A tensor is the model's input as it is (the
        model takes its size); a data set of dicts gives its ``"image"`` entries.
        """
        cfg = self.config
        if isinstance(data, (str, Path)):
            check = data_lib.check_dataset(data, image_size=cfg.image_size, crop_size=cfg.crop_size,
                                           backbone=cfg.backbone)
            if getattr(cfg, "keep_aspect", False):
                self.resize_shape, self.image_shape = data_lib.aspect_shapes(
                    cfg.image_size, cfg.crop_size, check.aspect(), multiple=max(self.strides))
            return torch.stack([data_lib.load_image(p, self.resize_shape, self.image_shape) for p in check.train])
        images = data if isinstance(data, torch.Tensor) else torch.stack([item["image"] for item in data])
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError("images", f"expected a tensor [N, 3, H, W], got shape {list(images.shape)}")
        if tuple(images.shape[-2:]) != self.image_shape:  # the grid follows the images given
            self.resize_shape = self.image_shape = tuple(images.shape[-2:])
        return images.float()

    def split_holdout(self, n: int) -> tuple[list[int], list[int]]:
        """Indices ``(train, held_out)`` of ``n`` normal images: ``config.holdout_fraction`` of them,
        chosen by seed, set the normal thresholds; none when there are fewer than two images."""
        if self.config.holdout_fraction <= 0 or n < 2:
            return list(range(n)), []
        return data_lib.split_holdout(range(n), self.config.holdout_fraction, self.config.seed)

    # ------------------------------------------------------------------ the numbers from normal images
    def calibrate(self, normal: list[Outputs], holdout: Outputs | None = None) -> None:
        """Set the normal thresholds from ``holdout`` (the held-out normal images' scores and maps) and
        the spreads over every normal image fitted on (``normal`` and ``holdout``); the model is then fitted.

        The spreads scale the normalised score of deployed predictions (:mod:`simplenet_edu.deploy.heatmaps`):
        a display scale, never a decision, and never from test images.
        """
        scored = list(normal) + ([holdout] if holdout is not None else [])
        if holdout is not None:
            scores, maps = holdout
            self.threshold_normal = threshold_from_normal(scores.numpy(), self.config.normal_max_fpr)
            self.pixel_threshold_normal = threshold_from_normal(maps.flatten().numpy(), self.config.normal_max_fpr)
        if scored:
            self.normal_score_spread = robust_spread(torch.cat([s for s, _ in scored]).numpy())
            self.normal_pixel_spread = robust_spread(torch.cat([m.flatten() for _, m in scored]).numpy())
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
