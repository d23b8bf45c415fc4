"""simplenet-edu: SimpleNet (Liu et al., CVPR 2023) to learn from and to use.

One module per stage of the method:

- :mod:`simplenet_edu.data` -- MVTec-layout data sets, the demo set, the MVTec AD download
- :mod:`simplenet_edu.backbones` -- frozen ImageNet feature extractors
- :mod:`simplenet_edu.features` -- feature extraction and local aggregation
- :mod:`simplenet_edu.adapter` -- the feature adaptor
- :mod:`simplenet_edu.noise` -- the anomalous feature generator
- :mod:`simplenet_edu.discriminator` -- the discriminator and the truncated L1 loss
- :mod:`simplenet_edu.model` -- the whole model: ``SimpleNet(config).fit(...).predict(...)``
- :mod:`simplenet_edu.localization` -- patch scores to anomaly maps
- :mod:`simplenet_edu.metrics` / :mod:`simplenet_edu.evaluation` -- honest evaluation
- :mod:`simplenet_edu.deploy` / :mod:`simplenet_edu.onnx_predict` -- ONNX export, and inference without torch
"""

from .errors import InputError

__all__ = ["InputError", "SimpleNet", "SimpleNetConfig", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # SimpleNet and SimpleNetConfig load torch on first use, not on `import simplenet_edu`: the ONNX
    # inference path (simplenet_edu.onnx_predict, `simplenet-edu predict --model x.onnx`) runs without it.
    if name in ("SimpleNet", "SimpleNetConfig"):
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
