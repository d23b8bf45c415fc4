"""The whole model: training runs and falls, same seed gives same scores, save/load round trip,
and the pipeline on the demo set (and on hazelnut_toy where it exists)."""

import pytest
import torch

from simplenet_edu import InputError, SimpleNet, SimpleNetConfig
from simplenet_edu.data import make_demo_dataset
from simplenet_edu.evaluation.evaluator import evaluate


def tiny_config(**overrides):
    # Lite0 at 64 px: an 8 x 8 patch grid; seconds to train.
    values = dict(image_size=64, pretrain_embed_dim=64, target_embed_dim=64, dsc_hidden=64,
                  epochs=3, batch_size=128, holdout_fraction=0.25, threshold_folds=0, device="cpu")
    values.update(overrides)
    return SimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def images():
    return torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(images):
    return SimpleNet(tiny_config()).fit(images, progress=False)


def test_predict_shapes_and_state_after_fit(trained, images):
    scores, maps = trained.predict(images[:3])
    assert scores.shape == (3,) and maps.shape == (3, 64, 64)
    # The image score is the maximum patch score: the anomaly map, before smoothing, peaks there.
    grid = trained.patch_scores(images[:3])
    assert torch.allclose(scores, grid.flatten(1).max(1).values)
    assert len(trained.history) == 3
    # Relative noise: sigma is noise_std times the measured feature spread.
    assert trained.sigma == pytest.approx(trained.config.noise_std * trained.feature_std)
    # 8 images, a quarter held out: the normal threshold lies just above the held-out scores.
    assert trained.threshold_normal is not None


def test_same_seed_same_scores_and_other_seed_differs(trained, images):
    again = SimpleNet(tiny_config()).fit(images, progress=False)
    assert torch.equal(trained.predict(images)[0], again.predict(images)[0])
    other = SimpleNet(tiny_config(seed=1)).fit(images, progress=False)
    assert not torch.equal(trained.predict(images)[0], other.predict(images)[0])


def test_save_and_load_give_identical_scores(trained, images, tmp_path):
    path = trained.save(tmp_path / "model.pt")
    loaded = SimpleNet.load(path)
    s1, m1 = trained.predict(images)
    s2, m2 = loaded.predict(images)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)
    assert loaded.threshold_normal == trained.threshold_normal
    assert loaded.config == trained.config
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_loading_a_foreign_file_is_a_clear_error(tmp_path):
    foreign = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(InputError, match="not a simplenet-edu checkpoint"):
        SimpleNet.load(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match=str(text)):
        SimpleNet.load(text)


def test_predict_before_fit_is_a_clear_error(images):
    with pytest.raises(InputError, match="fit"):
        SimpleNet(tiny_config()).predict(images)


def test_paper_preset_is_the_papers_configuration():
    cfg = SimpleNetConfig.paper()
    assert (cfg.backbone, cfg.image_size, cfg.crop_size) == ("wide_resnet50_2", 329, 288)
    assert (cfg.pretrain_embed_dim, cfg.target_embed_dim, cfg.dsc_hidden) == (1536, 1536, 1024)
    assert (cfg.noise_std, cfg.noise_scale, cfg.dsc_margin, cfg.epochs) == (0.015, "absolute", 0.5, 160)
    assert cfg.batch_size == 8 * 36 * 36  # 8 images of 36 x 36 patches per step, as the official code
    # Every part is the paper's choice, whatever the CPU default uses.
    assert (cfg.generator, cfg.adaptor, cfg.discriminator, cfg.loss, cfg.image_score) == \
        ("gaussian", "linear", "mlp", "truncated_l1", "max")
    assert (cfg.lr_adaptor, cfg.lr_discriminator, cfg.lr_schedule, cfg.select) == (1e-4, 2e-4, "constant", "last")


def test_pipeline_on_the_demo_set(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", category="brick", seed=0, image_size=128,
                             n_train=16, n_test_good=6, n_test_per_defect=3)
    model = SimpleNet(SimpleNetConfig.quick(device="cpu")).fit(root, progress=False)
    result = evaluate(model, root, progress=False)
    assert len(result) == 6 + 4 * 3
    assert result.anomaly_maps.shape == (18, 128, 128) and result.masks.shape == (18, 128, 128)
    # Well above chance on synthetic defects even with the quick configuration.
    assert result.metrics["image_auroc"] > 0.8
    assert result.metrics["pixel_auroc"] > 0.8
    assert result.metrics["threshold_normal"] == model.threshold_normal


def test_pipeline_on_hazelnut_toy(hazelnut_root):
    model = SimpleNet(SimpleNetConfig.quick(device="cpu")).fit(hazelnut_root, progress=False)
    result = evaluate(model, hazelnut_root, progress=False)
    assert len(result) == 23 and int(result.labels.sum()) == 17
    assert result.metrics["image_auroc"] > 0.9
    assert result.metrics["pixel_auroc"] > 0.85


@pytest.mark.parametrize("adaptor", ["linear", "identity"])
def test_folded_inference_gives_the_unfolded_scores(images, adaptor):
    # Aggregation, adaptor, first linear layer and BatchNorm (evaluation mode) are one affine map:
    # predict folds them into one convolution per layer; the scores must not change.
    from simplenet_edu.simplenet.model import FoldedScorer

    model = SimpleNet(tiny_config(adaptor=adaptor)).fit(images, progress=False)
    folded = FoldedScorer.of(model)
    assert folded is not None and len(folded.kernels) == 2
    assert torch.allclose(model.patch_scores(images, folded), model.patch_scores(images), atol=1e-4)
    assert FoldedScorer.of(SimpleNet(tiny_config(discriminator="conv"))) is None
