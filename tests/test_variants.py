"""Each variant of each part does what defines it (tiny dims, random features), and a model with any
variant trains, saves and loads."""

import math

import pytest
import torch

from simplenet_edu import InputError, SimpleNet, SimpleNetConfig
from simplenet_edu.simplenet.feature_adaptor import ConvAdaptor, IdentityAdaptor
from simplenet_edu.simplenet.loss import BCELoss, TruncatedL1Loss
from simplenet_edu.simplenet.discriminator import ConvDiscriminator, Discriminator
from simplenet_edu.simplenet.model import GridBatches, PatchBatches, aggregate, layer_features, train_step
from simplenet_edu.simplenet.anomaly_generator import (
    AdversarialNoise,
    GaussianNoise,
    LearnedNoise,
    MixupNoise,
    PerlinNoise,
)
from simplenet_edu.stages.perlin import perlin_masks, perlin_noise
from simplenet_edu.simplenet.config import CHOICES
from simplenet_edu.simplenet.variants import MaxScore, MeanScore, TopKMeanScore


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ generators


def test_mixup_is_a_convex_combination_with_a_feature_of_another_image():
    features = torch.randn(3, 4, 5, 8, generator=seeded(0))
    mixup = MixupNoise(low=0.2, high=0.5)
    fake = mixup(features, seeded(1))
    weight, image, cell = mixup.draw(features.shape, seeded(1))
    partners = features.flatten(1, 2)[image, cell]
    assert torch.allclose(fake, (1 - weight) * features + weight * partners)
    assert ((weight >= 0.2) & (weight <= 0.5)).all()
    own = torch.arange(3).view(3, 1, 1).expand_as(image)
    assert (image != own).all()                      # never the feature's own image
    assert len(image.unique()) == 3                  # ... but every other image gets used
    assert not torch.allclose(fake, features)


def test_adversarial_step_fools_the_discriminator_and_stays_within_its_bound():
    torch.manual_seed(0)
    dim, sigma = 16, 0.3
    disc = Discriminator(dim, 32, 2).eval()
    features = torch.randn(200, dim, generator=seeded(0))
    adversarial = AdversarialNoise(sigma, step=0.5, max_norm=2.0)
    plain = GaussianNoise(sigma)(features, seeded(1))         # the same noise the step starts from
    fake = adversarial(features, seeded(1), discriminator=disc)
    with torch.no_grad():
        # The step moves fakes towards where the discriminator says "normal": the hardest fakes.
        assert disc(fake).mean() > disc(plain).mean() + 0.05
    norms = (fake - features).norm(dim=1)
    assert norms.max() <= adversarial.max_norm * adversarial.radius(dim) * (1 + 1e-5)
    assert norms.min() > 0
    assert not disc.training                         # probed, and left in the mode it was in
    assert all(p.grad is None for p in disc.parameters())


def test_adversarial_bound_bites_when_the_step_is_large():
    disc = Discriminator(8, 16, 2).eval()
    features = torch.randn(50, 8, generator=seeded(2))
    adversarial = AdversarialNoise(0.1, step=10.0, max_norm=1.5)
    fake = adversarial(features, seeded(3), discriminator=disc)
    norms = (fake - features).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 1.5 * adversarial.radius(8)), rtol=1e-4)


def test_learned_generator_stays_in_its_shell_and_learns_to_fool():
    torch.manual_seed(0)
    dim = 12
    learned = LearnedNoise(dim, sigma=0.2, min_norm=0.5, max_norm=2.0)
    features = torch.randn(300, dim, generator=seeded(0)) * 5
    norms = (learned(features) - features).norm(dim=1)
    lo, hi = learned.bounds(dim)
    assert lo == pytest.approx(0.5 * 0.2 * math.sqrt(dim)) and hi == pytest.approx(2.0 * 0.2 * math.sqrt(dim))
    assert (norms >= lo * (1 - 1e-5)).all() and (norms <= hi * (1 + 1e-5)).all()
    # Gradient reversal: a loss the discriminator minimises is one the generator maximises.
    disc = Discriminator(dim, 16, 2)
    fake = learned(features)
    TruncatedL1Loss(0.5)(disc(features), disc(fake)).backward()
    w = learned.mlp[0].weight
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_learned_generator_gradient_is_the_negated_loss_gradient():
    torch.manual_seed(1)
    dim = 6
    learned = LearnedNoise(dim, sigma=0.5)
    features = torch.randn(10, dim, generator=seeded(4))
    weights = torch.randn(dim, generator=seeded(5))
    (learned(features) @ weights).sum().backward()
    reversed_grad = learned.mlp[2].bias.grad.clone()
    learned.zero_grad()
    (learned.perturbation(features) @ weights).sum().backward()
    assert torch.allclose(reversed_grad, -learned.mlp[2].bias.grad)


def test_perlin_noise_is_seeded_smooth_and_in_range():
    a = perlin_noise(32, 32, (4, 4), seeded(0))
    assert torch.equal(a, perlin_noise(32, 32, (4, 4), seeded(0)))
    assert not torch.equal(a, perlin_noise(32, 32, (4, 4), seeded(1)))
    assert a.abs().max() <= 1.0 + 1e-6
    # Smooth: neighbours differ far less than the values vary (white noise: about 1.1 std).
    assert (a[:, 1:] - a[:, :-1]).abs().mean() < 0.5 * a.std()


def test_perlin_mask_is_binary_covers_a_sensible_share_and_is_sometimes_empty():
    perlin = PerlinNoise(sigma=1.0, threshold=0.2, zero_prob=0.5)
    masks = perlin.mask(200, 16, 16, seeded(0))
    assert masks.dtype == torch.bool
    covered = masks.flatten(1).float().mean(1)
    empty = covered == 0
    assert 0.3 < empty.float().mean() < 0.7                   # zeroed with probability 0.5
    share = covered[~empty].mean()
    assert 0.1 < share < 0.5                                   # threshold 0.2: blobs, not all or nothing


def test_simplenets_perlin_variant_draws_supersimplenets_masks():
    perlin = PerlinNoise(sigma=1.0, threshold=0.3, zero_prob=0.4)
    assert torch.equal(perlin.mask(12, 16, 8, seeded(5)), perlin_masks(12, 16, 8, 0.3, 0.4, seeded(5)))


def test_perlin_generator_leaves_features_outside_the_mask_unchanged():
    features = torch.randn(6, 8, 8, 4, generator=seeded(0))
    perlin = PerlinNoise(sigma=0.5, threshold=0.2, zero_prob=0.0)
    fake = perlin(features, seeded(3))
    mask = perlin.mask(6, 8, 8, seeded(3))
    changed = (fake != features).any(-1)
    assert torch.equal(changed, mask)
    assert mask.any()


# ------------------------------------------------------------------ adaptors, discriminators, losses


def test_identity_adaptor_returns_its_input():
    x = torch.randn(5, 7)
    assert IdentityAdaptor()(x) is x
    assert not list(IdentityAdaptor().parameters())


def test_conv_adaptor_works_per_layer_before_aggregation():
    adaptor = ConvAdaptor(n_layers=2, layer_dim=6, out_dim=4)
    x = torch.randn(3, 5, 12, generator=seeded(0))
    out = adaptor(x)
    assert out.shape == (3, 5, 4)
    # Layer 1's input cannot change what layer 0's block computes: the layers are adapted apart.
    y = x.clone()
    y[..., 6:] = torch.randn(3, 5, 6, generator=seeded(1))
    first = lambda t: adaptor.layers[0](t.reshape(-1, 12)[:, :6])  # noqa: E731
    assert torch.equal(first(x), first(y))
    assert (adaptor.layers[0](x.reshape(-1, 12)[:, :6]) >= 0).all()    # ReLU


def test_layer_features_then_aggregate_equal_the_paper_features():
    model = SimpleNet(SimpleNetConfig.quick(image_size=64, pretrain_embed_dim=32, target_embed_dim=24,
                                            device="cpu"))
    images = torch.rand(2, 3, 64, 64, generator=seeded(0))
    layers, grid = layer_features(model.extractor, images)
    features, grid2 = model.extractor(images)
    assert grid == grid2 == model.grid() and layers.shape == (2, 64, 2 * 32)
    assert torch.allclose(aggregate(layers, 24), features, atol=1e-6)


def test_conv_discriminator_shape_and_probability_range():
    disc = ConvDiscriminator(dim=10, hidden=8).eval()
    features = torch.randn(2, 5, 6, 10, generator=seeded(0))
    logits = disc(features)
    p = disc.probability(features)
    assert logits.shape == p.shape == (2, 5, 6)
    assert ((p > 0) & (p < 1)).all()
    assert torch.allclose(p, torch.sigmoid(logits))
    # It looks at neighbours: changing one cell changes the scores of the cells next to it.
    other = features.clone()
    other[0, 2, 3] += 5
    changed = (disc(other) != logits)
    assert changed[0, 2, 4] and changed[0, 1, 3] and not changed[1].any()


def test_mlp_discriminator_scores_grids_patch_by_patch():
    disc = Discriminator(8, 16, 2).eval()
    grid = torch.randn(2, 3, 4, 8, generator=seeded(0))
    assert torch.allclose(disc(grid), disc(grid.reshape(-1, 8)).view(2, 3, 4))


def test_bce_loss_at_known_points():
    bce = BCELoss()
    assert bce(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))
    # (log(1 + e^-2) + log(1 + e^-1)) / 2: a normal at logit 2, a fake at logit -1
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert bce(torch.tensor([2.0]), torch.tensor([-1.0])).item() == pytest.approx(expected)
    assert bce.accuracy(torch.tensor([2.0, -1.0]), torch.tensor([-1.0, 3.0])) == (0.5, 0.5)


def test_truncated_l1_object_matches_the_paper_function_and_tolerates_no_fakes():
    from simplenet_edu.simplenet.loss import truncated_l1_loss

    normal, fake = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.2])
    assert TruncatedL1Loss(0.5)(normal, fake).item() == truncated_l1_loss(normal, fake, 0.5).item()
    assert TruncatedL1Loss(0.5)(normal, torch.empty(0)).item() == pytest.approx(0.25)


# ------------------------------------------------------------------ image scores


def test_image_score_reducers():
    scores = torch.tensor([[0.0, 1.0, 5.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    assert torch.equal(TopKMeanScore(1)(scores), MaxScore()(scores))
    assert torch.equal(TopKMeanScore(4)(scores), MeanScore()(scores))
    assert torch.allclose(TopKMeanScore(2)(scores), torch.tensor([3.5, 3.0]))
    assert TopKMeanScore(0.5).count(4) == 2 and TopKMeanScore(0.01).count(1000) == 10
    assert TopKMeanScore(50).count(4) == 4


# ------------------------------------------------------------------ training plumbing


def test_grid_batches_keep_images_and_take_as_many_steps_as_patches():
    bank = torch.arange(5 * 16 * 2, dtype=torch.float32).view(5, 16, 2)   # 5 images, 4 x 4 grid
    grid_batches = GridBatches(bank, (4, 4), batch_size=8, generator=seeded(0))
    batches = list(grid_batches)
    assert all(b.shape == (2, 2, 2, 2) for b in batches)
    assert len(batches) == len(list(PatchBatches(bank, 8, seeded(0)))) == 10
    # A crop is a contiguous window of one image's grid.
    grid = bank.view(5, 4, 4, 2)
    first = batches[0][0]
    assert any(torch.equal(first, grid[i, r:r + 2, c:c + 2]) for i in range(5) for r in range(3) for c in range(3))


def test_train_step_counts_unchanged_fakes_as_normal():
    torch.manual_seed(0)
    disc = Discriminator(4, 8, 2)
    features = torch.randn(2, 4, 4, 4, generator=seeded(0))
    with torch.no_grad():
        scores = disc(torch.cat([features, features]))              # what the step will see
    never = PerlinNoise(sigma=1.0, zero_prob=1.0)                   # every mask emptied: no fake at all
    opt = [torch.optim.SGD(disc.parameters(), lr=0.0)]
    stats = train_step(IdentityAdaptor(), never, disc, opt, features, TruncatedL1Loss(0.5))
    # Both halves are scored as normal: the loss is the normal term over all 64 features.
    assert stats["loss"] == pytest.approx(torch.relu(0.5 - scores).mean().item(), rel=1e-5)


def test_unknown_variant_names_the_option_and_choices():
    with pytest.raises(InputError, match=r"generator: is not a variant; choose from gaussian, mixup.*got 'gan'"):
        SimpleNet(SimpleNetConfig.quick(generator="gan", device="cpu"))
    with pytest.raises(InputError, match="topk"):
        SimpleNet(SimpleNetConfig.quick(image_score="topk", topk=0, device="cpu"))


def tiny(**overrides):
    # 32 px: a 4 x 4 patch grid, 16-d features; a fraction of a second per fit.
    values = dict(image_size=32, pretrain_embed_dim=16, target_embed_dim=16, dsc_hidden=16, epochs=1,
                  batch_size=32, holdout_fraction=0.25, threshold_folds=0, device="cpu")
    values.update(overrides)
    return SimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, 3, 32, 32, generator=seeded(0))


VARIANTS = [(part, name) for part, names in CHOICES.items() for name in names[1:]]


@pytest.mark.parametrize("part,name", VARIANTS, ids=[f"{p}={n}" for p, n in VARIANTS])
def test_every_variant_trains_is_reproducible_and_survives_save_load(part, name, images, tmp_path):
    model = SimpleNet(tiny(**{part: name})).fit(images, progress=False)
    scores, maps = model.predict(images)
    assert scores.shape == (6,) and maps.shape == (6, 32, 32) and torch.isfinite(scores).all()
    again = SimpleNet(tiny(**{part: name})).fit(images, progress=False)
    assert torch.equal(again.predict(images)[0], scores)
    loaded = SimpleNet.load(model.save(tmp_path / "m.pt"))
    assert getattr(loaded.config, part) == name
    assert torch.equal(loaded.predict(images)[0], scores)
    for attribute in ("adaptor", "discriminator", "generator"):
        saved, restored = getattr(model, attribute).state_dict(), getattr(loaded, attribute).state_dict()
        assert saved.keys() == restored.keys()
        assert all(torch.equal(saved[k], restored[k]) for k in saved)
    if name == "learned":
        assert any(True for _ in loaded.generator.parameters())


def test_every_variant_says_where_it_comes_from():
    from simplenet_edu.simplenet.config import ORIGINS

    assert set(ORIGINS) == {(part, name) for part, names in CHOICES.items() for name in names}
    assert all(ORIGINS[part, names[0]].startswith("the paper:") for part, names in CHOICES.items())
    assert ORIGINS["generator", "perlin"].startswith("SuperSimpleNet")
