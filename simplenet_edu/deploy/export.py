"""Ship a trained model: its whole inference path as one ONNX graph, checked before it is written.

:class:`SimpleNetInference` is ``SimpleNet.predict`` as a plain ``torch.nn.Module`` that an exporter can
trace: ``images [B, 3, H, W]`` RGB in [0, 1] -> ``scores [B]`` and ``maps [B, H, W]``, with everything
in between inside (the backbone's normalisation, the backbone, the folded scorer, the image score, the
upsampling and smoothing as two constant matrix products). The batch axis is dynamic; ``H`` and ``W``
are the model's input shape (``model.image_shape``), fixed at training.

:func:`export_onnx` traces it, writes the thresholds, the anchors of the normalised score and the
configuration into the ONNX metadata, and runs onnxruntime on a few images next to torch. When any
score or map value differs by more than ``tolerance`` it refuses (:class:`InputError`: one line, exit
code 2 on the command line) and writes nothing. :mod:`simplenet_edu.deploy.runtime` runs the file
without torch.

Exporters (``exporter=``): ``"torchscript"`` (the default: torch's TorchScript-based exporter,
``torch.onnx.export(..., dynamo=False)``; needs only ``onnx``; a few seconds) or ``"dynamo"`` (the
``torch.export``-based one that torch recommends; also needs ``onnxscript``; several times slower
to export here). Both are checked the same way, and both give the same scores to about 1e-6.

Another model class becomes exportable by adding its inference module to :data:`INFERENCE_MODULES`
(the same ``images -> (scores, maps)`` contract); the metadata names the class (``model_type``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..utils.atomic import write_bytes
from ..utils.errors import InputError
from ..simplenet.local_aggregation import resize_to_grid
from .heatmaps import NORMALISED_FORMULA, RAW_MAP_FORMULA
from ..evaluation.localization import axis_operator
from ..evaluation.report import calibration_text
from ..simplenet.folded import FoldedScorer
from ..simplenet.model import SimpleNet
from .runtime import DEFAULT_TOLERANCE, ONNX_FORMAT, ONNX_VERSION

EXPORTERS = ("torchscript", "dynamo")
OPSET = 17
INSTALL_HINT = 'pip install "simplenet-edu[export]"'


class SimpleNetInference(nn.Module):
    """A trained :class:`~simplenet_edu.simplenet.model.SimpleNet` at inference, as one traceable module.

    ``forward(images [B, 3, H, W] in [0, 1]) -> (scores [B], maps [B, H, W])``: the same numbers as
    ``model.predict``. Uses the :class:`~simplenet_edu.simplenet.model.FoldedScorer` where the variants fold (the
    paper's linear adaptor, or none, with the MLP discriminator); otherwise aggregation, adaptor and
    discriminator run as trained. The ``conv`` adaptor is not exportable.
    """

    def __init__(self, model: SimpleNet):
        super().__init__()
        model.check_fitted()
        if model.adaptor.reads_layers:
            raise InputError("model", f"the {model.config.adaptor!r} adaptor cannot be exported (its per-layer "
                                      "pooling has no ONNX form here); use the torch predict path")
        model.eval()
        self.backbone = model.extractor.backbone          # normalises the images itself
        self.image_score = model.image_score
        folded = FoldedScorer.of(model)
        self.folded = folded is not None
        if self.folded:
            # The folded weights as buffers, detached: constants of the graph.
            for i, kernel in enumerate(folded.kernels):
                self.register_buffer(f"kernel{i}", kernel.detach().clone())
            self.register_buffer("bias", folded.bias.detach().clone())
            self.register_buffer("head", folded.head.detach().clone())
            self.slope, self.padding, self.n_layers = folded.slope, folded.padding, len(folded.kernels)
        else:
            # Local aggregation in its folded form (LocalAggregation.forward), the kernels as buffers.
            aggregation = model.extractor.aggregation
            kernels = aggregation.kernels(self.backbone.channels)
            for i, kernel in enumerate(kernels):
                self.register_buffer(f"aggregation{i}", kernel.detach().clone())
            self.padding, self.n_layers = (aggregation.patch_size - 1) // 2, len(kernels)
            self.adaptor, self.discriminator = model.adaptor, model.discriminator
        (height, width), (h, w) = tuple(model.image_shape), model.grid()
        self.grid = (h, w)
        sigma = float(model.config.smoothing_sigma)
        self.register_buffer("rows", axis_operator(h, height, sigma).float())     # [H, h]
        self.register_buffer("cols", axis_operator(w, width, sigma).float())      # [W, w]

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, h, w]``, as ``SimpleNet.patch_scores``."""
        maps = self.backbone(images)
        if self.folded:
            kernels = [getattr(self, f"kernel{i}") for i in range(self.n_layers)]
            return FoldedScorer(kernels, self.bias, self.head, self.slope, self.padding)(maps)
        features = 0
        for i, fmap in enumerate(maps):
            kernel = getattr(self, f"aggregation{i}")
            features = features + resize_to_grid(F.conv2d(fmap, kernel, padding=self.padding), self.grid)
        grids = features.permute(0, 2, 3, 1)                                     # [B, h, w, D]
        return -self.discriminator(self.adaptor(grids)).float()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self.patch_scores(images)
        return self.image_score(grid.flatten(1)), self.rows @ grid @ self.cols.T


INFERENCE_MODULES: dict[str, Callable[..., nn.Module]] = {"SimpleNet": SimpleNetInference}


def inference_module(model) -> nn.Module:
    """The exportable ``images -> (scores, maps)`` module of a trained model, in evaluation mode."""
    kind = type(model).__name__
    if kind not in INFERENCE_MODULES:
        raise InputError("model", f"{kind} cannot be exported yet (exportable: {', '.join(INFERENCE_MODULES)})")
    return INFERENCE_MODULES[kind](model).eval()


# ------------------------------------------------------------------ metadata


def _json(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def read_evaluation(path: str | os.PathLike, model) -> dict:
    """The F1 threshold of an ``evaluate --output`` JSON made with this very model, for the metadata.
    Checks that its ``threshold_normal`` is the model's (else it was another model)."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(path, f"not an evaluation JSON ({type(error).__name__})") from None
    if not isinstance(report, dict) or "threshold_f1" not in report:
        raise InputError(path, "not an evaluation JSON of simplenet-edu evaluate --output (no threshold_f1)")
    mine, theirs = getattr(model, "threshold_normal", None), report.get("threshold_normal")
    if mine is None or theirs is None or not np.isclose(mine, theirs, rtol=1e-9, atol=0):
        raise InputError(path, f"was made with another model (its threshold_normal {theirs} is not this "
                               f"model's {mine}); run simplenet-edu evaluate --checkpoint on this checkpoint")
    return {"threshold_f1": float(report["threshold_f1"]), "f1_max": report.get("f1_max"),
            "threshold_f1_source": f"F1-max threshold chosen on the labelled test set by {path.name} "
                                   "(optimistic: the test set picked it; the normal threshold did not see it)"}


def export_metadata(model, exporter: str, evaluation: dict | None = None) -> dict[str, str]:
    """The ONNX ``metadata_props``: every value a string (numbers, lists and ``null`` as JSON)."""
    resize = getattr(model, "resize_shape", None) or model.image_shape
    values = {
        "format": ONNX_FORMAT, "version": ONNX_VERSION, "model_type": type(model).__name__,
        "simplenet_edu_version": __version__, "torch_version": torch.__version__, "exporter": exporter,
        "input": "images: float32 [B, 3, H, W], RGB in [0, 1] (8-bit / 255), resized bilinearly to "
                 "resize_shape then centre-cropped to image_shape; normalisation happens inside",
        "outputs": "scores: float32 [B] image anomaly scores (higher is more anomalous); maps: float32 "
                   "[B, H, W] pixel anomaly maps, same scale",
        "resize_shape": list(resize), "image_shape": list(model.image_shape),
        "threshold_normal": model.threshold_normal, "pixel_threshold_normal": model.pixel_threshold_normal,
        "threshold_source": calibration_text(getattr(model, "calibration", None)),
        # target false-positive rate, the rate achieved on those normal images, its 95 % upper bound
        "threshold_calibration": getattr(model, "calibration", None),
        "normal_score_spread": getattr(model, "normal_score_spread", None),
        "normal_pixel_spread": getattr(model, "normal_pixel_spread", None),
        "normalised_score": NORMALISED_FORMULA + " (threshold: threshold_normal, spread: normal_score_spread; "
                            "pixels: pixel_threshold_normal, normal_pixel_spread)",
        "raw_map_png": RAW_MAP_FORMULA + " (16-bit PNG of predict --no-overlay; map_min, map_max in scores.csv)",
        "n_train": getattr(model, "n_train", None), "n_holdout": getattr(model, "n_holdout", None),
        "config": model.config.to_dict(),
    }
    values.update(evaluation or {})
    return {key: _json(value) for key, value in values.items()}


# ------------------------------------------------------------------ export and check


def run_onnxruntime(onnx_model: bytes | str | os.PathLike, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``[B]`` and maps ``[B, H, W]`` of ``images [B, 3, H, W]`` under onnxruntime on the CPU,
    from the serialised model or a file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    scores, maps = session.run(["scores", "maps"], {session.get_inputs()[0].name: images.astype(np.float32)})
    return scores, maps


def check_images(model, images: torch.Tensor | None = None, n: int = 4, seed: int = 0) -> torch.Tensor:
    """The images the export is checked on: ``images`` (``[N, 3, H, W]``), else ``n`` seeded random
    images (uniform noise: the check is about arithmetic, not about what the images show)."""
    if images is not None:
        return images.float()
    height, width = model.image_shape
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _trace(module: nn.Module, example: torch.Tensor, exporter: str):
    """The ONNX ``ModelProto`` of ``module``, traced on ``example``, batch axis dynamic."""
    import onnx

    names = dict(input_names=["images"], output_names=["scores", "maps"])
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice and its tracer warnings (the batch size is
        # read from a shape in places; the dynamic axis and the check below cover that).
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=OPSET,
                              dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}, "maps": {0: "batch"}},
                              **names)
            return onnx.load_from_string(buffer.getvalue())
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
        except ImportError:
            raise InputError("--exporter dynamo", f"needs onnxscript ({INSTALL_HINT})") from None
        program = torch.onnx.export(module, (example,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
        return program.model_proto


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    n_images: int
    max_score_difference: float     # max |onnxruntime - torch| over the check images' scores
    max_map_difference: float       # ... and over every pixel of their maps
    tolerance: float
    exporter: str
    metadata: dict[str, str]


@torch.no_grad()
def export_onnx(model, output: str | os.PathLike, images: torch.Tensor | None = None,
                tolerance: float = DEFAULT_TOLERANCE, exporter: str = "torchscript",
                evaluation: dict | None = None,
                perturb: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                ) -> ExportReport:
    """Export ``model`` (moved to the CPU) to ``output`` as ONNX, after checking onnxruntime against torch.

    ``images [N, 3, H, W]`` in [0, 1]: the check images (default :func:`check_images`); they run as
    one batch and the first alone as another, which also checks the dynamic batch axis. ``tolerance``:
    the largest allowed ``|onnxruntime - torch|`` on any score or map value; beyond it
    :class:`InputError` and nothing is written. ``evaluation``: :func:`read_evaluation`'s F1
    threshold for the metadata. ``perturb(scores, maps)``: alters onnxruntime's outputs before the
    comparison (for tests of the refusal).
    """
    if exporter not in EXPORTERS:
        raise InputError("--exporter", f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    if not tolerance >= 0:
        raise InputError("--tolerance", f"must be a number >= 0, got {tolerance}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError("export", f"needs onnx and onnxruntime ({INSTALL_HINT})") from None
    output = Path(output)
    model = model.cpu().eval()         # exported and checked on the CPU (the model stays there)
    if hasattr(model, "device"):
        model.device = torch.device("cpu")
    module = inference_module(model)
    images = check_images(model, images)
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != tuple(model.image_shape):
        raise InputError("images", f"expected [N, 3, {model.image_shape[0]}, {model.image_shape[1]}], "
                                   f"got {list(images.shape)}")

    proto = _trace(module, images[:2] if len(images) >= 2 else images.repeat(2, 1, 1, 1), exporter)
    metadata = export_metadata(model, exporter, evaluation)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"simplenet-edu {__version__}: {type(model).__name__} images -> (scores, maps)"

    def compare(serialised: bytes) -> tuple[float, float]:
        worst = [0.0, 0.0]
        for batch in (images, images[:1]):
            want_scores, want_maps = (t.numpy() for t in module(batch))
            scores, maps = run_onnxruntime(serialised, batch.numpy())
            if perturb is not None:
                scores, maps = perturb(scores, maps)
            if scores.shape != want_scores.shape or maps.shape != want_maps.shape:
                raise InputError(output, f"onnxruntime gave shapes {list(scores.shape)}, {list(maps.shape)} "
                                         f"for a batch of {len(batch)}; nothing written")
            worst = [max(worst[0], float(np.abs(scores - want_scores).max())),
                     max(worst[1], float(np.abs(maps - want_maps).max()))]
        return worst[0], worst[1]

    serialised = proto.SerializeToString()
    score_diff, map_diff = compare(serialised)
    if not (score_diff <= tolerance and map_diff <= tolerance):   # NaN fails too
        raise InputError(output, f"onnxruntime and torch disagree beyond the tolerance {tolerance:g} on "
                                 f"{len(images)} images (max |difference|: scores {score_diff:.3g}, maps "
                                 f"{map_diff:.3g}); nothing written")
    # The check's result travels with the model.
    check = {"images": len(images), "tolerance": tolerance, "max_score_difference": score_diff,
             "max_map_difference": map_diff}
    entry = proto.metadata_props.add()
    entry.key, entry.value = "export_check", json.dumps(check)
    metadata["export_check"] = entry.value

    write_bytes(output, proto.SerializeToString())
    return ExportReport(output, len(images), score_diff, map_diff, tolerance, exporter, metadata)
