"""The training budget (optimiser steps, not passes), the learning-rate schedule, and honest stopping
from painted held-out normal images."""

import math

import numpy as np
import pytest
import torch

from simplenet_edu import SimpleNet, SimpleNetConfig, SuperSimpleNetConfig
from simplenet_edu.core.fitted import StepLog, training_steps
from simplenet_edu.simplenet.model import PatchBatches, endless, make_schedule
from simplenet_edu.simplenet.validation import paint, painted_validation_set, validation_scores


def tiny_config(**overrides):
    # Lite0 at 64 px: an 8 x 8 patch grid; seconds to train.
    values = dict(image_size=64, pretrain_embed_dim=32, target_embed_dim=32, dsc_hidden=32, steps=10,
                  batch_size=64, holdout_fraction=0.25, threshold_folds=0, device="cpu")
    values.update(overrides)
    return SimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def images():
    return torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_budget_is_steps_unless_passes_are_asked_for():
    assert training_steps(SimpleNetConfig(steps=250), steps_per_pass=7) == 250
    assert training_steps(SimpleNetConfig(epochs=3), steps_per_pass=7) == 21
    assert training_steps(SuperSimpleNetConfig(steps=None, epochs=4), steps_per_pass=5) == 20


def test_the_log_of_a_run_has_about_twenty_rows_or_one_per_pass():
    by_steps = StepLog.of_run(SimpleNetConfig(steps=100), steps_per_pass=7, progress=False)
    assert (by_steps.total, by_steps.every) == (100, 5)
    for step in range(1, 101):
        by_steps.add(step, {"loss": float(step)})
    rows = by_steps.close()
    assert len(rows) == 20 and rows[0] == {"step": 5, "epoch": 5 / 7, "loss": 3.0}   # mean of steps 1..5
    by_passes = StepLog.of_run(SimpleNetConfig(epochs=3), steps_per_pass=7, progress=False)
    assert (by_passes.total, by_passes.every) == (21, 7)


def test_patch_batches_count_and_endless_reshuffles():
    bank = torch.arange(10, dtype=torch.float32).view(1, 10, 1)    # 10 patches of one dimension
    batches = PatchBatches(bank, 4, torch.Generator().manual_seed(0))
    assert len(batches) == len(list(batches)) == 3                  # 4 + 4 + 2
    assert len(PatchBatches(bank, 3, torch.Generator())) == 3        # 3 + 3 + 3, a last lone patch dropped
    drawn = list(endless(batches, 7))                                # two passes and one batch more
    assert len(drawn) == 7
    first, second = torch.cat(drawn[:3]).flatten(), torch.cat(drawn[3:6]).flatten()
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)                            # each pass is shuffled anew


def test_cosine_schedule_halves_at_the_middle_and_ends_at_zero():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.4)
    schedule = make_schedule(optimizer, "cosine", total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.4) and rates[5] == pytest.approx(0.2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert rates[3] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 0.3)))


def test_fit_takes_exactly_the_budget_of_steps_whatever_the_data_size(images, monkeypatch):
    import simplenet_edu.simplenet.model as model_lib

    calls = []
    real_step = model_lib.train_step
    monkeypatch.setattr(model_lib, "train_step", lambda *args: calls.append(1) or real_step(*args))
    for count in (4, 8):                    # 3 or 6 training images: 3 or 6 batches of 64 per pass
        calls.clear()
        model = SimpleNet(tiny_config(steps=13, val_checkpoints=0)).fit(images[:count], progress=False)
        assert len(calls) == 13 and model.history[-1]["step"] == 13
        assert model.history[-1]["epoch"] == pytest.approx(13 / (model.n_train * 64 / 64))


def test_painted_set_layout_and_masks():
    # Non-square, on 8-bit levels as images read from files are.
    images = torch.randint(0, 256, (2, 3, 48, 64), generator=torch.Generator().manual_seed(1)) / 255
    val = painted_validation_set(images, seed=3)
    assert val.images.shape == (10, 3, 48, 64) and val.masks.shape == (10, 48, 64)
    assert val.labels.tolist() == [0, 0] + [1] * 8
    assert torch.equal(val.images[:2], images) and not val.masks[:2].any()
    area = val.masks[2:].reshape(8, -1).sum(1) / 48 ** 2          # relative to the short side's square
    assert ((area >= 0.005) & (area <= 0.05)).all()
    changed = (val.images[2:] != images.repeat_interleave(4, 0)).any(1).numpy()
    # Pixels change only near the defect (the painters blur its edge by a few pixels).
    assert not (changed & ~dilate(val.masks[2:].astype(bool), 6)).any()
    again = painted_validation_set(images, seed=3)
    assert torch.equal(again.images, val.images)
    assert not torch.equal(painted_validation_set(images, seed=4).images, val.images)


def dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.binary_dilation(m, iterations=radius) for m in masks])


def test_paint_keeps_the_image_range_and_8_bit_levels():
    image = torch.full((3, 32, 32), 0.5)
    painted, mask = paint(image, "hole", np.random.default_rng(0))
    assert painted.min() >= 0 and painted.max() <= 1
    assert torch.allclose(painted * 255, (painted * 255).round(), atol=1e-4)
    assert (painted[:, torch.from_numpy(mask)] < 0.5).all()           # a hole is darker


def test_validation_scores_by_hand():
    labels = np.array([0, 1, 1])
    masks = np.zeros((3, 4, 4), dtype=np.uint8)
    masks[1, :2, :2] = 1
    masks[2, 3, 3] = 1
    perfect = masks.astype(float)
    scores = validation_scores(labels, masks, [0.1, 0.9, 0.8], perfect)
    assert scores == {"val_image_auroc": 1.0, "val_aupro": 1.0, "val_score": 1.0}
    # The first anomalous image below the normal one: one of two pairs ordered wrongly.
    assert validation_scores(labels, masks, [0.5, 0.4, 0.8], perfect)["val_image_auroc"] == 0.5


def test_history_records_validation_at_the_checkpoints(images):
    model = SimpleNet(tiny_config(steps=20, val_checkpoints=4)).fit(images, progress=False)
    checked = [row["step"] for row in model.history if "val_score" in row]
    assert checked == [5, 10, 15, 20]
    assert model.selected_step == 20                                  # select="last": the last step


def test_select_validation_keeps_the_best_checkpoint(images, monkeypatch):
    scripted = iter([0.2, 0.9, 0.5, 0.4, 0.3])                       # the best is the second checkpoint

    def fake_validate(self, validation, grid):
        score = next(scripted)
        return {"val_image_auroc": score, "val_aupro": score, "val_score": score}

    monkeypatch.setattr(SimpleNet, "_validate", fake_validate)
    chosen = SimpleNet(tiny_config(steps=10, val_checkpoints=5, select="validation")).fit(images, progress=False)
    assert chosen.selected_step == 4
    monkeypatch.undo()
    # A run stopped at step 4 has the same heads: the same scores on any image.
    short = SimpleNet(tiny_config(steps=4, val_checkpoints=0)).fit(images, progress=False)
    assert torch.equal(chosen.predict(images)[0], short.predict(images)[0])


def test_history_mean_skips_steps_without_fakes():
    # A Perlin step whose masks were all empty reports d_fake = NaN; the history row averages the rest.
    from simplenet_edu.utils.stats import nanmean

    assert nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(nanmean([float("nan"), float("nan")]))
