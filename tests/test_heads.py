"""Adaptor, anomalous feature generator, discriminator and loss: shapes and math."""

import math

import pytest
import torch

from simplenet_edu.simplenet.feature_adaptor import FeatureAdaptor
from simplenet_edu.simplenet.discriminator import Discriminator
from simplenet_edu.simplenet.loss import truncated_l1_loss
from simplenet_edu.simplenet.anomaly_generator import GaussianNoise, noise_sigma


def test_truncated_l1_loss_at_known_points():
    # margin 0.5: normal scores 1.0 and 0.0 cost 0 and 0.5 (mean 0.25);
    # fake scores -1.0 and 0.2 cost 0 and 0.7 (mean 0.35). Total 0.6.
    normal, fake = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.2])
    assert truncated_l1_loss(normal, fake, 0.5).item() == pytest.approx(0.6)
    # Beyond the margin on both sides the loss is exactly zero: nothing pushes scores further.
    assert truncated_l1_loss(torch.tensor([0.5, 3.0]), torch.tensor([-0.5, -9.0])).item() == 0.0


def test_truncated_l1_gradient_is_one_inside_the_margin_and_zero_outside():
    normal = torch.tensor([0.2, 0.9], requires_grad=True)
    fake = torch.tensor([0.0, -0.7], requires_grad=True)
    truncated_l1_loss(normal, fake, 0.5).backward()
    assert normal.grad.tolist() == [-0.5, 0.0]  # d/dD of mean(relu(0.5 - D)) over 2 samples
    assert fake.grad.tolist() == [0.5, 0.0]


def test_adaptor_is_one_linear_layer_that_keeps_the_feature_scale():
    torch.manual_seed(0)
    adaptor = FeatureAdaptor(256)
    assert sum(p.numel() for p in adaptor.parameters()) == 256 * 256 + 256
    x = 3.0 * torch.randn(4096, 256)
    # Xavier-normal (variance 1/D) keeps the standard deviation near 3 (bias is small).
    assert adaptor(x).std().item() == pytest.approx(3.0, rel=0.1)


def test_discriminator_layout_and_output_shape():
    torch.manual_seed(0)
    disc = Discriminator(dim=16, hidden=8, n_layers=2)
    layers = [type(m).__name__ for m in disc.modules() if not isinstance(m, (Discriminator, torch.nn.Sequential))]
    assert layers == ["Linear", "BatchNorm1d", "LeakyReLU", "Linear"]
    assert disc.tail.bias is None
    assert disc(torch.randn(5, 16)).shape == (5,)


def test_noise_sigma_relative_and_absolute():
    assert noise_sigma(0.15, 3.0, "relative") == pytest.approx(0.45)
    assert noise_sigma(0.015, 3.0, "absolute") == 0.015
    with pytest.raises(ValueError):
        noise_sigma(0.1, 1.0, "other")


def test_gaussian_noise_has_the_requested_std_and_is_seeded():
    features = torch.zeros(20000, 8)
    noised = GaussianNoise(sigma=0.5)(features, generator=torch.Generator().manual_seed(1))
    assert noised.std().item() == pytest.approx(0.5, rel=0.02)
    again = GaussianNoise(sigma=0.5)(features, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noised, again)


def test_mix_noise_draws_sigmas_from_the_geometric_ladder():
    gen = GaussianNoise(sigma=0.1, mix_noise=3)
    sigmas = gen.sigmas(3000, generator=torch.Generator().manual_seed(0)).flatten()
    levels = sorted({round(s, 6) for s in sigmas.tolist()})
    assert levels == [0.1, round(0.1 * 1.1, 6), round(0.1 * 1.21, 6)]
    # Each level is drawn about a third of the time.
    counts = [(sigmas.sub(level).abs() < 1e-6).sum().item() for level in levels]
    assert all(math.isclose(c / 3000, 1 / 3, abs_tol=0.05) for c in counts)


def test_discriminator_batchnorm_equals_torchs_on_patch_features():
    # Our BatchNorm1d computes on an [N, C, 1] view for speed; the numbers and running statistics
    # must be those of nn.BatchNorm1d on [N, C].
    from simplenet_edu.simplenet.discriminator import BatchNorm1d

    x = torch.randn(64, 12, generator=torch.Generator().manual_seed(0)) * 3 + 1
    ours, reference = BatchNorm1d(12), torch.nn.BatchNorm1d(12)
    assert torch.allclose(ours(x), reference(x), atol=1e-6)
    assert torch.allclose(ours.running_mean, reference.running_mean)
    assert torch.allclose(ours.running_var, reference.running_var)
    ours.eval(), reference.eval()
    assert torch.allclose(ours(x), reference(x), atol=1e-6)
    assert list(ours.state_dict()) == list(reference.state_dict())
