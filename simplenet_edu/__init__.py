"""simplenet-edu: SimpleNet (Liu et al., CVPR 2023) to learn from and to use.

The package is laid out as the method is (``ARCHITECTURE.md`` at the repository's root has the tree):

- :mod:`simplenet_edu.utils` -- leaf helpers: errors, atomic writes, the device, statistics
- :mod:`simplenet_edu.data` -- MVTec-layout data sets, the up-front check, the demo set, the MVTec AD download
- :mod:`simplenet_edu.stages` -- the stages both models share: frozen backbones, Perlin noise
- :mod:`simplenet_edu.evaluation` -- metrics, localization, evaluating a test set, the report
- :mod:`simplenet_edu.core` -- the fitted-model core: thresholds, batched predict, checkpoints, the registry
- :mod:`simplenet_edu.simplenet` -- SimpleNet, one module per stage, and ``SimpleNet`` itself
- :mod:`simplenet_edu.supersimplenet` -- SuperSimpleNet, its successor
- :mod:`simplenet_edu.deploy` -- ONNX export, inference without torch, heat-map files
- :mod:`simplenet_edu.course` -- what the notebooks share: settings, figures, widgets, the baseline
- :mod:`simplenet_edu.apps` -- the command line, the benchmark runner, the ablation

``from simplenet_edu import SimpleNet, SimpleNetConfig, SuperSimpleNet, SuperSimpleNetConfig, load_model``.
"""

from .utils.errors import InputError

__all__ = ["InputError", "SimpleNet", "SimpleNetConfig", "SuperSimpleNet", "SuperSimpleNetConfig", "load_model",
           "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The models load torch on first use, not on `import simplenet_edu`: the ONNX inference path
    # (simplenet_edu.deploy.runtime, `simplenet-edu predict --model x.onnx`) runs without it.
    if name == "SimpleNet":
        from .simplenet.model import SimpleNet

        return SimpleNet
    if name == "SimpleNetConfig":
        from .simplenet.config import SimpleNetConfig

        return SimpleNetConfig
    if name == "SuperSimpleNet":
        from .supersimplenet.model import SuperSimpleNet

        return SuperSimpleNet
    if name == "SuperSimpleNetConfig":
        from .supersimplenet.config import SuperSimpleNetConfig

        return SuperSimpleNetConfig
    if name == "load_model":
        from .core.registry import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
