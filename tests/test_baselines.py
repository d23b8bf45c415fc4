"""The nearest-neighbour baseline (PatchCore's memory-bank idea) against hand-computed values."""

import numpy as np
import pytest
import torch

from simplenet_edu import InputError, data
from simplenet_edu.course.baselines import NearestNeighbourBaseline, greedy_coreset, nearest_distances
from simplenet_edu.evaluation.evaluator import evaluate
from simplenet_edu.simplenet.config import SimpleNetConfig


def test_nearest_distances_by_hand():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    queries = torch.tensor([[0.0, 1.0], [3.0, 4.0], [6.0, 8.0]])
    assert nearest_distances(queries, bank, chunk=2).tolist() == pytest.approx([1.0, 0.0, 5.0])


def test_greedy_coreset_adds_the_farthest_point_each_time():
    # On a line: 0, 1, 2, 10. From 0 the farthest is 10; then 2 (distance 2) beats 1 (distance 1).
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    assert greedy_coreset(points, 3, projection=None).tolist() == [0, 3, 2]
    assert greedy_coreset(points, 1, start=2, projection=None).tolist() == [2]
    with pytest.raises(InputError, match="coreset size"):
        greedy_coreset(points, 5)


def test_the_coreset_covers_the_bank():
    points = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    kept = greedy_coreset(points, 30, projection=None)
    assert len(set(kept.tolist())) == 30, "no point is chosen twice"
    # Every point lies within the k-centre radius of a kept one; a random subset covers worse.
    radius = nearest_distances(points, points[kept]).max()
    random_radius = nearest_distances(points, points[torch.randperm(300, generator=torch.Generator().manual_seed(1))[:30]]).max()
    assert radius < random_radius


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("nn")
    return data.make_demo_dataset(root, "brick", image_size=64, n_train=6, n_test_good=2, n_test_per_defect=1)


def test_fit_predict_and_evaluate_like_simplenet(tiny_set):
    config = SimpleNetConfig.quick(image_size=64, device="cpu")
    baseline = NearestNeighbourBaseline(config, coreset=0.5).fit(tiny_set)
    h = w = 64 // 8
    assert (baseline.n_train, baseline.n_holdout) == (5, 1)
    assert baseline.bank.shape == (round(0.5 * 5 * h * w), config.target_embed_dim)

    train = data.MVTecDataset(tiny_set, split="train", image_size=64)
    image = train[0]["image"][None]
    scores, maps = baseline.predict(image)
    assert scores.shape == (1,) and maps.shape == (1, 64, 64)
    assert torch.isclose(scores[0], baseline.patch_scores(image).max())

    # A patch kept in the bank is its own nearest neighbour: distance 0.
    features, _ = baseline.extractor(image)
    assert nearest_distances(baseline.bank[:5], baseline.bank).tolist() == [0.0] * 5
    assert nearest_distances(features[0], baseline.bank).min() >= 0

    # The held-out normal image sets the threshold: it is not flagged (at most 1 % of 1 image may be).
    images = baseline.training_images(tiny_set)
    holdout = images[baseline.split_holdout(len(images))[1]]
    assert (baseline.predict(holdout)[0].numpy().astype(np.float64) < baseline.threshold_normal).all()
    result = evaluate(baseline, tiny_set, progress=False)
    assert len(result) == 2 + len(data.DEMO_DEFECTS)
    assert 0.0 <= result.metrics["image_auroc"] <= 1.0 and result.metrics["aupro"] is not None
    assert np.isfinite(result.anomaly_maps).all()


def test_refuses_a_bad_share_and_an_unfitted_use():
    with pytest.raises(InputError, match="coreset"):
        NearestNeighbourBaseline(SimpleNetConfig.quick(device="cpu"), coreset=0)
    baseline = NearestNeighbourBaseline(SimpleNetConfig.quick(image_size=64, device="cpu"))
    with pytest.raises(InputError, match="fit"):
        baseline.predict(torch.zeros(1, 3, 64, 64))
