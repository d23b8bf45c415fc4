"""``benchmarks/sweep.py`` with a different noise generator: experiments behind the CPU default.

The library's relative noise gives every fake feature the same sigma in every dimension
(``noise_std`` times the std of all training patch features). Two alternatives were measured on the
development suite (``results/default_sweep.md``) and not adopted:

- ``--variant per_dim``: sigma_d = noise_std x the std of feature dimension d (noise that follows each
  dimension's own spread);
- ``--variant log_uniform``: each fake draws its sigma from sigma x RANGE**u, u ~ U(-1/2, 1/2)
  (``--range 4``: a factor of 4 between the smallest and the largest).

The generator is replaced for the length of the sweep only. Other options as sweep.py::

    python benchmarks/sweep_noise_variants.py --variant per_dim --seeds 0 1 2 --base val_checkpoints=0 \
        --grid noise_std=0.25,0.5
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sweep  # noqa: E402

from simplenet_edu.simplenet import model as model_lib  # noqa: E402
from simplenet_edu.simplenet import anomaly_generator as noise, variants  # noqa: E402


class PerDimensionNoise(noise.GaussianNoise):
    """``features [..., D] + N(0, diag(scale^2))``, ``scale [D]``."""

    def __init__(self, scale: torch.Tensor):
        super().__init__(1.0)
        self.scale = scale

    def forward(self, features, generator=None, discriminator=None):
        return features + torch.randn(features.shape, generator=generator) * self.scale.to(features)


def per_dim() -> None:
    original = model_lib.SimpleNet.fit_features

    def fit_features(self, bank, grid, holdout=None, progress=True, validation=None):
        std_per_dim = bank.float().flatten(0, 1).std(0)                            # [D]
        make = variants.make_generator
        variants.make_generator = lambda config, sigma: PerDimensionNoise(config.noise_std * std_per_dim)
        try:
            return original(self, bank, grid, holdout, progress, validation)
        finally:
            variants.make_generator = make

    model_lib.SimpleNet.fit_features = fit_features


def log_uniform(spread: float) -> None:
    def sigmas(self, n, generator=None, device=None):
        u = torch.rand((n, 1), generator=generator, device=device) - 0.5
        return self.sigma * spread ** u

    noise.GaussianNoise.sigmas = sigmas


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--variant", choices=["per_dim", "log_uniform"], required=True)
    parser.add_argument("--range", type=float, default=4.0)
    args, rest = parser.parse_known_args()
    per_dim() if args.variant == "per_dim" else log_uniform(args.range)
    sys.argv = [sys.argv[0], *rest]
    torch.set_num_threads(1)
    sweep.main()
