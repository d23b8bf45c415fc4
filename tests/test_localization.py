"""Anomaly maps: bilinear upsampling of the patch grid, then SciPy-equal Gaussian smoothing."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from simplenet_edu.evaluation.localization import anomaly_maps, gaussian_kernel1d, gaussian_smooth


def test_kernel_matches_scipy_radius_and_sums_to_one():
    kernel = gaussian_kernel1d(4.0)
    assert len(kernel) == 2 * 16 + 1  # SciPy truncates at 4 sigma: radius int(4 * 4 + 0.5) = 16
    assert kernel.sum().item() == pytest.approx(1.0)
    assert kernel.argmax().item() == 16


@pytest.mark.parametrize("shape", [(2, 40, 37), (1, 5, 3)])
def test_smoothing_equals_scipy_gaussian_filter(shape):
    # (1, 5, 3) is smaller than the kernel: SciPy's 'reflect' padding repeats; so must ours.
    maps = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    expected = np.stack([gaussian_filter(m.double().numpy(), sigma=4.0) for m in maps])
    assert np.allclose(gaussian_smooth(maps, 4.0).numpy(), expected, atol=1e-5)


def test_anomaly_map_size_and_constant_grid():
    # A constant patch grid stays constant after upsampling and smoothing.
    maps = anomaly_maps(torch.full((2, 4, 4), 1.5), size=(32, 32), sigma=4.0)
    assert maps.shape == (2, 32, 32)
    assert torch.allclose(maps, torch.full_like(maps, 1.5))


def test_anomaly_map_peak_stays_where_the_patch_is():
    grid = torch.zeros(1, 8, 8)
    grid[0, 2, 5] = 1.0
    amap = anomaly_maps(grid, size=(64, 64), sigma=4.0)[0]
    row, col = divmod(amap.argmax().item(), 64)
    # Patch (2, 5) covers pixels 16..23 x 40..47 of the 64 x 64 image.
    assert 16 <= row <= 23 and 40 <= col <= 47


@pytest.mark.parametrize("grid, size", [((8, 8), (64, 64)), ((5, 7), (40, 56)), ((32, 32), (256, 256))])
def test_matrix_form_equals_upsampling_then_smoothing(grid, size):
    # anomaly_maps uses two matrix products; the definition is bilinear upsampling, then a Gaussian.
    import torch.nn.functional as F

    scores = torch.randn(2, *grid, generator=torch.Generator().manual_seed(0))
    upsampled = F.interpolate(scores.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    assert torch.allclose(anomaly_maps(scores, size, 4.0), gaussian_smooth(upsampled, 4.0), atol=1e-5)
    assert torch.allclose(anomaly_maps(scores, size, 0.0), upsampled, atol=1e-5)
