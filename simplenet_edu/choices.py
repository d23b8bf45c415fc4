"""The names of SimpleNet's switchable parts and of their variants, the paper's choice first.

Plain data, without torch, so that the command line can build its options (and ``simplenet-edu
predict --model x.onnx`` can run) without loading the library; :mod:`simplenet_edu.variants` turns
the names into modules and re-exports ``CHOICES``.
"""

CHOICES: dict[str, tuple[str, ...]] = {
    "generator": ("gaussian", "mixup", "adversarial", "learned", "perlin"),
    "adaptor": ("linear", "identity", "conv"),
    "discriminator": ("mlp", "conv"),
    "loss": ("truncated_l1", "bce"),
    "image_score": ("max", "mean", "topk"),
}

# Where each variant comes from, for tables and notebooks (the first choice of every part is the paper's).
ORIGINS: dict[tuple[str, str], str] = {
    ("generator", "gaussian"): "the paper: Gaussian noise on every patch feature",
    ("generator", "mixup"): "common alternative: mixup (Zhang et al. 2018), a blend with another image's feature",
    ("generator", "adversarial"): "common alternative: Gaussian noise, then one step towards where D says normal",
    ("generator", "learned"): "common alternative: a learned perturbation, trained to fool the discriminator",
    ("generator", "perlin"): "SuperSimpleNet (Rolih et al. 2024): Gaussian noise inside Perlin-noise masks",
    ("adaptor", "linear"): "the paper: one Linear(D, D)",
    ("adaptor", "identity"): "the paper's own ablation (no adaptor; also the official main.py default)",
    ("adaptor", "conv"): "common alternative: per layer a 1x1 conv + BatchNorm + ReLU, before pooling",
    ("discriminator", "mlp"): "the paper: a 2-layer MLP on each patch feature",
    ("discriminator", "conv"): "common alternative: a 3-layer conv net over the feature grid",
    ("loss", "truncated_l1"): "the paper: truncated L1 with a margin",
    ("loss", "bce"): "common alternative: binary cross-entropy on logits",
    ("image_score", "max"): "the paper: the highest patch score",
    ("image_score", "mean"): "common alternative: the mean patch score",
    ("image_score", "topk"): "common alternative: the mean of the k highest patch scores",
}
