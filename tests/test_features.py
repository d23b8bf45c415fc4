"""Local aggregation: shapes and arithmetic against values worked by hand."""

import torch
import torch.nn.functional as F

from simplenet_edu.simplenet.local_aggregation import (
    FeatureExtractor,
    LocalAggregation,
    pool_to_dim,
    resize_to_grid,
    unfold_neighbourhoods,
)


def test_unfold_gathers_the_3x3_neighbourhood_with_zero_padding():
    # One channel holding 0..8 on a 3x3 grid:  0 1 2 / 3 4 5 / 6 7 8
    fmap = torch.arange(9.0).view(1, 1, 3, 3)
    patches = unfold_neighbourhoods(fmap)
    assert patches.shape == (1, 9, 3, 3)
    # The centre location sees the whole grid, in row-major order.
    assert patches[0, :, 1, 1].tolist() == list(range(9))
    # The top-left corner sees zeros outside the map: 0 0 0 / 0 0 1 / 0 3 4.
    assert patches[0, :, 0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 3, 4]


def test_unfold_is_channel_major():
    # Two channels, constant 1 and 2: the first 9 values come from channel 0.
    fmap = torch.stack([torch.ones(4, 4), 2 * torch.ones(4, 4)]).unsqueeze(0)
    centre = unfold_neighbourhoods(fmap)[0, :, 2, 2]
    assert centre.tolist() == [1.0] * 9 + [2.0] * 9


def test_pool_to_dim_averages_consecutive_values():
    # 6 values pooled to 2: the means of (1, 2, 3) and (4, 5, 6).
    vectors = torch.tensor([[1.0, 2, 3, 4, 5, 6]])
    assert pool_to_dim(vectors, 2).tolist() == [[2.0, 5.0]]
    # Pooling to a larger size repeats values: 2 -> 4 gives each value twice.
    assert pool_to_dim(torch.tensor([[1.0, 3.0]]), 4).tolist() == [[1.0, 1.0, 3.0, 3.0]]


def test_resize_to_grid_is_identity_on_the_same_grid_and_bilinear_otherwise():
    x = torch.randn(2, 5, 4, 4)
    assert resize_to_grid(x, (4, 4)) is x
    up = resize_to_grid(x, (8, 8))
    assert up.shape == (2, 5, 8, 8)
    assert torch.allclose(up, F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False))


def test_aggregation_shapes_and_matches_the_official_recipe():
    torch.manual_seed(0)
    shallow, deep = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)
    features, grid = LocalAggregation(pretrain_embed_dim=12, target_embed_dim=10)([shallow, deep])
    assert grid == (8, 8)
    assert features.shape == (2, 64, 10)

    # The official code's steps, written out by hand for one location (image 1, row 5, column 2).
    def hand_pool(vector, n):
        # Adaptive average pooling: output i averages inputs floor(i*L/n) .. ceil((i+1)*L/n) - 1.
        length = len(vector)
        return torch.stack([vector[(i * length) // n: -(-(i + 1) * length // n)].mean() for i in range(n)])

    padded = F.pad(shallow, (1, 1, 1, 1))
    p_shallow = padded[1, :, 5:8, 2:5].reshape(-1)                              # 4 * 9 = 36 values
    deep_up = F.interpolate(unfold_neighbourhoods(deep), size=(8, 8), mode="bilinear", align_corners=False)
    p_deep = deep_up[1, :, 5, 2]                                                # 6 * 9 = 54 values
    pooled = torch.cat([hand_pool(p_shallow, 12), hand_pool(p_deep, 12)])      # 24 values
    assert torch.allclose(hand_pool(p_shallow, 12), p_shallow.view(12, 3).mean(1))  # 36 -> 12: triples
    expected = hand_pool(pooled, 10)
    assert torch.allclose(features[1, 5 * 8 + 2], expected, atol=1e-6)


def test_aggregation_pooling_arithmetic_on_constant_maps():
    # Constant maps: every neighbourhood value away from the border equals the constant, so an
    # inner patch feature is the constant of each layer, half the dimensions each.
    # (The deep map must be large enough that the inner location's bilinear sources are inner too.)
    shallow = torch.full((1, 2, 16, 16), 3.0)
    deep = torch.full((1, 4, 8, 8), 7.0)
    features, _ = LocalAggregation(pretrain_embed_dim=8, target_embed_dim=4)([shallow, deep])
    inner = features[0].view(16, 16, 4)[8, 8]
    assert torch.allclose(inner, torch.tensor([3.0, 3.0, 7.0, 7.0]))


def test_feature_extractor_runs_without_gradients():
    class TwoMaps(torch.nn.Module):
        def forward(self, images):
            return [images[:, :, ::2, ::2] * 1.0, images[:, :, ::4, ::4] * 1.0]

    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    features, grid = FeatureExtractor(TwoMaps(), LocalAggregation(6, 6))(images)
    assert grid == (8, 8) and features.shape == (2, 64, 6)
    assert not features.requires_grad


def test_folded_convolution_equals_the_step_by_step_recipe():
    # Aggregation is linear, so one 3x3 convolution per layer gives the official four steps' numbers.
    torch.manual_seed(1)
    maps = [torch.randn(2, 5, 12, 10), torch.randn(2, 7, 6, 5)]
    for dp, d in [(20, 16), (64, 48), (30, 30)]:
        aggregation = LocalAggregation(pretrain_embed_dim=dp, target_embed_dim=d)
        folded, grid = aggregation(maps)
        steps, grid_steps = aggregation.forward_steps(maps)
        assert grid == grid_steps == (12, 10)
        assert torch.allclose(folded, steps, atol=1e-5)


def test_pooling_matrix_rows_are_averaging_windows():
    from simplenet_edu.simplenet.local_aggregation import pooling_matrix

    # 6 -> 4: windows [0, 2), [1, 3), [3, 5), [4, 6) by the floor/ceil rule, each weight 1/2.
    expected = torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0],
                             [0, 0, 0, 0.5, 0.5, 0], [0, 0, 0, 0, 0.5, 0.5]], dtype=torch.float64)
    assert torch.equal(pooling_matrix(6, 4), expected)
