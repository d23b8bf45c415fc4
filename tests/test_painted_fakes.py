"""The image-level generator (fakes="painted"): painting, cell coverage and the two distance rules by hand."""

import math

import pytest
import torch

from simplenet_edu.simplenet.anomaly_generator_painted import (
    PaintedCells,
    blob_mask,
    cell_coverage,
    nearest_distances,
    normal_distance_threshold,
    paint_images,
    paint_training_set,
    painted_cells,
    select_cells,
)


def test_cell_coverage_is_the_painted_share_of_each_cell():
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = masks[0, 0, 1] = masks[0, 1, 0] = True    # 3 of the 4 pixels of the top-left cell
    masks[0, 3, 3] = True                                       # 1 of 4 of the bottom-right cell
    assert cell_coverage(masks, (2, 2)).tolist() == [[0.75, 0.0, 0.0, 0.25]]


def test_nearest_distances_skip_the_rows_of_the_same_image():
    reference = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    queries = torch.tensor([[0.0, 0.0], [9.0, 0.0]])
    assert nearest_distances(queries, reference).tolist() == [0.0, 1.0]
    # Query 0 is of image 0, like reference rows 0 and 2: its nearest of another image is (3, 4), at 5.
    # Query 1 is of image 1, like (3, 4): its nearest of another image is (10, 0), at 1.
    groups = nearest_distances(queries, reference, torch.tensor([0, 1]), torch.tensor([0, 1, 0]))
    assert groups.tolist() == pytest.approx([5.0, 1.0])
    groups = nearest_distances(queries, reference, torch.tensor([0, 0]), torch.tensor([0, 1, 0]))
    assert groups.tolist() == pytest.approx([5.0, math.hypot(6, 4)])


def test_normal_distance_threshold_by_hand():
    # Two images of two 1-d patches: image 0 at 0 and 1, image 1 at 3 and 7. Every patch is both a
    # reference and a probe; the nearest of the other image: 0 -> 3 (3), 1 -> 3 (2), 3 -> 1 (2), 7 -> 1 (6).
    bank = torch.tensor([[[0.0], [1.0]], [[3.0], [7.0]]])
    tau, reference = normal_distance_threshold(bank, 0.5, torch.Generator().manual_seed(0), reference=4, probes=4)
    assert tau == pytest.approx(2.5)                  # the median of 2, 2, 3, 6
    assert sorted(reference.flatten().tolist()) == [0.0, 1.0, 3.0, 7.0]
    tau, _ = normal_distance_threshold(bank, 1.0, torch.Generator().manual_seed(0), reference=4, probes=4)
    assert tau == pytest.approx(6.0)


def test_select_cells_by_hand():
    # One image of four 1-d cells, r = 2: coverage 1, 0.6, 0, 0; painted features 10, 0.5, 0.4, 3;
    # before painting 0, 0, 0, 0 (moved 10, 0.5, 0.4, 3). Reference (normal) patches at 0 and 1, tau 2.
    clean = torch.zeros(1, 4, 1)
    painted = torch.tensor([[[10.0], [0.5], [0.4], [3.0]]])
    coverage = torch.tensor([[1.0, 0.6, 0.0, 0.0]])
    fake, normal = select_cells(clean, painted, coverage, torch.tensor([[0.0], [1.0]]), tau=2.0, r=2.0)
    # cell 0: painted, 9 from the nearest normal patch: fake. cell 1: painted but 0.5 from one: dropped.
    # cell 2: untouched, moved 0.4 < 0.5 r = 1: normal. cell 3: untouched but moved 3: neither.
    assert fake.tolist() == [[True, False, False, False]]
    assert normal.tolist() == [[False, False, True, False]]


def test_painted_cells_and_draw():
    clean = torch.zeros(2, 4, 1)
    painted = torch.tensor([[[10.0], [0.5], [0.4], [3.0]], [[0.1], [0.2], [20.0], [0.0]]])
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)       # a 4 x 4 image on a 2 x 2 grid
    masks[0, :2, :] = True                                # image 0: cells 0 and 1 painted
    masks[1, 2:, :2] = True                               # image 1: cell 2 painted
    bank = torch.tensor([[[0.0], [1.0]], [[0.5], [1.5]]])
    cells = painted_cells(clean, painted, masks, bank, (2, 2), r=2.0, seed=0, quantile=1.0)
    # tau: the largest of the distances to the other image's patches: 0 -> 0.5, 1 -> 0.5, 0.5 -> 0.5, 1.5 -> 0.5.
    assert cells.tau == pytest.approx(0.5)
    assert sorted(cells.fakes.flatten().tolist()) == [10.0, 20.0]     # 0.5 lies on a normal patch: dropped
    assert sorted(cells.normals.flatten().tolist()) == pytest.approx([0.0, 0.1, 0.2, 0.4])
    assert cells.kept == pytest.approx(2 / 3)
    normals, fakes = cells.draw(7, torch.Generator().manual_seed(0))
    assert normals.shape == (4, 1) and fakes.shape == (3, 1)
    assert set(fakes.flatten().tolist()) <= {10.0, 20.0}
    empty = PaintedCells(normals=cells.normals, fakes=torch.zeros(0, 1), tau=1.0, kept=0.0)
    normals, fakes = empty.draw(6, torch.Generator().manual_seed(0))
    assert normals.shape == (6, 1) and fakes.shape == (0, 1)


def test_painting_is_seeded_and_textures_touch_only_their_mask():
    images = torch.rand(6, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    images = (images * 255).round() / 255
    painted, masks = paint_images(images, seed=3)
    again, masks_again = paint_images(images, seed=3)
    other, _ = paint_images(images, seed=4)
    assert torch.equal(painted, again) and torch.equal(masks, masks_again) and not torch.equal(painted, other)
    assert painted.shape == images.shape and masks.shape == (6, 64, 48) and masks.dtype == torch.bool
    assert torch.equal((painted * 255).round() / 255, painted)           # 8-bit values, as an image file
    textures, masks = paint_images(images, seed=3, painter_share=0.0)
    assert all(mask.any() for mask in masks)
    outside = ~masks[:, None].expand_as(images)
    assert torch.allclose(textures[outside], images[outside], atol=1e-6)
    assert not torch.allclose(textures[~outside], images[~outside])
    # The demo painters' defects cover 0.5 % to 5 % of the image (their antialiased rims spill a little).
    _, masks = paint_images(images, seed=3, painter_share=1.0)
    assert all(0.005 <= mask.float().mean() <= 0.05 for mask in masks)


def test_texture_masks_cover_a_bounded_share():
    generator = torch.Generator().manual_seed(0)
    shares = [blob_mask(64, 64, generator).float().mean().item() for _ in range(20)]
    assert all(0.005 <= share <= 0.4 for share in shares)


def test_paint_training_set_reads_clean_features_from_the_bank_and_restricts_to_folds():
    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    calls = []

    def extract(batch):               # a 2 x 2 grid of 3-d "features": each cell's mean colour
        calls.append(len(batch))
        return torch.nn.functional.avg_pool2d(batch, 8).flatten(2).transpose(1, 2)

    bank = {0: extract(images[:1])[0], 3: extract(images[3:4])[0]}
    calls.clear()
    painting = paint_training_set(lambda idx: images[idx], extract, [0, 1, 2, 3, 4], (2, 2), seed=0,
                                  clean=bank.get, batch_size=4)
    # Two batches (4 + 1 images): each painted, then the images not in the bank extracted as they are.
    assert calls == [4, 2, 1, 1]
    assert torch.allclose(painting.clean, extract(images))
    assert painting.painted.shape == (5, 4, 3) and painting.masks.shape == (5, 16, 16)
    again = paint_training_set(lambda idx: images[idx], extract, [0, 1, 2, 3, 4], (2, 2), seed=0, batch_size=2)
    assert torch.equal(again.painted, painting.painted)     # one random stream, whatever the batch size
    cells = painting.cells([1, 3], r=1.0, seed=0)
    # Only the copies of images 1 and 3: at most their 8 cells, split into normal and fake ones.
    assert len(cells.normals) + len(cells.fakes) <= 8


# ---------------------------------------------------------------- in training (fakes="painted")

from simplenet_edu import SimpleNet, SimpleNetConfig                       # noqa: E402
from simplenet_edu.simplenet.loss import BCELoss                          # noqa: E402
from simplenet_edu.simplenet.training import train_step                   # noqa: E402
from simplenet_edu.utils.errors import InputError                         # noqa: E402


def test_train_step_adds_the_painted_cells_own_loss_by_hand():
    # Discriminator: the feature itself (a 1 x 1 linear map of weight 1); fakes: normal + 1; no optimiser.
    discriminator = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(discriminator.weight)
    normal = torch.tensor([[0.0], [1.0]])
    painted = (torch.tensor([[2.0]]), torch.tensor([[-1.0], [0.0]]))

    def log1p_exp(x):
        return math.log1p(math.exp(x))

    # BCE on logits: a normal s costs log(1 + e^-s), a fake log(1 + e^s), each term the mean over its rows.
    gaussian = (log1p_exp(0) + log1p_exp(-1) + log1p_exp(1) + log1p_exp(2)) / 4
    cells = (log1p_exp(-2) + log1p_exp(-1) + log1p_exp(0)) / 3
    plain = train_step(torch.nn.Identity(), lambda x, discriminator=None: x + 1, discriminator, [], normal, BCELoss())
    both = train_step(torch.nn.Identity(), lambda x, discriminator=None: x + 1, discriminator, [], normal, BCELoss(),
                      painted)
    assert plain["loss"] == pytest.approx(gaussian, rel=1e-6)
    assert both["loss"] == pytest.approx(gaussian + cells, rel=1e-6)


def test_config_rules_for_painted_fakes_and_keep_aspect():
    assert SimpleNetConfig().fakes == "gaussian" and SimpleNetConfig().keep_aspect == "auto"
    assert SimpleNetConfig.paper().keep_aspect is False                     # the paper preset squashes, as it did
    with pytest.raises(InputError, match="fakes"):
        SimpleNetConfig(fakes="textures")
    with pytest.raises(InputError, match="fakes: 'painted' needs discriminator='mlp'"):
        SimpleNetConfig(fakes="painted", discriminator="conv")
    with pytest.raises(InputError, match="keep_aspect: must be True, False or 'auto'"):
        SimpleNetConfig(keep_aspect="sometimes")


def _tiny(**overrides):
    values = dict(image_size=64, pretrain_embed_dim=32, target_embed_dim=32, dsc_hidden=32, steps=12,
                  batch_size=64, holdout_fraction=0.25, threshold_folds=0, val_checkpoints=0, device="cpu",
                  fakes="painted")
    values.update(overrides)
    return SimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def images():
    return torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_fit_with_painted_fakes_draws_half_a_batch_of_cells_each_step(images, monkeypatch):
    import simplenet_edu.simplenet.model as model_lib

    sizes = []
    real_step = model_lib.train_step
    monkeypatch.setattr(model_lib, "train_step",
                        lambda *args: sizes.append(sum(len(part) for part in args[6])) or real_step(*args))
    model = SimpleNet(_tiny()).fit(images, progress=False)
    assert sizes == [32] * 12                         # batch_size / 2 painted cells at every step
    assert model.timings["seconds_painting"] > 0 and model.threshold_normal is not None
    again = SimpleNet(_tiny()).fit(images, progress=False)
    scores, _ = model.predict(images[:2])
    assert torch.equal(scores, again.predict(images[:2])[0])     # seeded: the same painting, the same heads


def test_painted_fakes_with_out_of_fold_thresholds_and_not_from_features(images):
    model = SimpleNet(_tiny(threshold_folds=2)).fit(images, progress=False)
    assert model.threshold_normal is not None
    with pytest.raises(InputError, match="fakes: 'painted' paints the training images: use fit"):
        SimpleNet(_tiny()).fit_features(torch.rand(4, 64, 32), (8, 8))
