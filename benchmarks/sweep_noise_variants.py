"""``benchmarks.sweep`` with a different noise generator: experiments behind the CPU default.

The library's relative noise gives every fake feature the same sigma in every dimension
(``noise_std`` times the std of all training patch features). Two alternatives were measured on the
development suite (``results/default_sweep.md``) and not adopted:

- ``--variant per_dim``: sigma_d = noise_std x the std of feature dimension d (noise that follows each
  dimension's own spread);
- ``--variant log_uniform``: each fake draws its sigma from sigma x RANGE**u, u ~ U(-1/2, 1/2)
  (``--range 4``: a factor of 4 between the smallest and the largest).

The generator is replaced for the length of the sweep only; every other option is the sweep's::

    python -m benchmarks.sweep_noise_variants --variant per_dim --seeds 0 1 2 --base val_checkpoints=0 \
        --grid noise_std=0.25,0.5
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks import sweep
from benchmarks.common import command
from simplenet_edu.simplenet import variants
from simplenet_edu.simplenet.anomaly_generator import GaussianNoise
from simplenet_edu.simplenet.model import SimpleNet


class PerDimensionNoise(GaussianNoise):
    """``features [..., D] + N(0, diag(scale^2))``, ``scale [D]``."""

    def __init__(self, scale: torch.Tensor):
        super().__init__(1.0)
        self.scale = scale

    def forward(self, features, generator=None, discriminator=None):
        return features + torch.randn(features.shape, generator=generator) * self.scale.to(features)


def per_dim() -> None:
    """Every ``fit_features`` builds :class:`PerDimensionNoise` from its own bank's per-dimension std."""
    original = SimpleNet.fit_features

    def fit_features(self, bank, grid, holdout=None, progress=True, validation=None):
        std_per_dim = bank.float().flatten(0, 1).std(0)                            # [D]
        make = variants.make_generator
        variants.make_generator = lambda config, sigma: PerDimensionNoise(config.noise_std * std_per_dim)
        try:
            return original(self, bank, grid, holdout, progress, validation)
        finally:
            variants.make_generator = make

    SimpleNet.fit_features = fit_features


def log_uniform(spread: float) -> None:
    """Every Gaussian fake draws its own sigma, log-uniform over a factor of ``spread``."""
    def sigmas(self, n, generator=None, device=None):
        u = torch.rand((n, 1), generator=generator, device=device) - 0.5
        return self.sigma * spread ** u

    GaussianNoise.sigmas = sigmas


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--variant", choices=["per_dim", "log_uniform"], required=True)
    parser.add_argument("--range", type=float, default=4.0)
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parser.parse_known_args(argv)
    per_dim() if args.variant == "per_dim" else log_uniform(args.range)
    sweep.main(rest, recorded=command("sweep_noise_variants", argv))


if __name__ == "__main__":
    main()
