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
