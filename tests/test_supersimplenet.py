"""SuperSimpleNet: the Perlin generator, the heads and the losses against hand values and their
shapes; fit / predict / save / load on tiny images; the supervised layout; the checkpoint kinds."""

import math
import shutil

import pytest
import torch

from simplenet_edu import InputError, SimpleNet, SimpleNetConfig
from simplenet_edu.data import make_demo_dataset
from simplenet_edu.supersimplenet.loss import SuperSimpleNetLoss, focal_loss, signed_truncated_l1
from simplenet_edu.core.registry import checkpoint_kind, load_model
from simplenet_edu.stages.perlin import perlin_masks, perlin_noise, perlin_scales
from simplenet_edu.supersimplenet.anomaly_generator import PerlinAnomalyGenerator
from simplenet_edu.supersimplenet.heads import ClassificationHead, SegmentationDetectionModule
from simplenet_edu.supersimplenet.features import downsample_masks, upscaled_features
from simplenet_edu.supersimplenet.model import SuperSimpleNet
from simplenet_edu.supersimplenet.training import lr_factor, read_anomalous_training_set
from simplenet_edu.supersimplenet.config import SuperSimpleNetConfig


def tiny(**overrides):
    # Lite0 at 64 px: an 8 x 8 grid, small heads, a few steps: seconds.
    values = dict(image_size=64, seg_hidden=32, cls_channels=4, steps=6, batch_size=4,
                  holdout_fraction=0.25, threshold_folds=0, device="cpu")
    values.update(overrides)
    return SuperSimpleNetConfig.quick(**values)


@pytest.fixture(scope="module")
def images():
    return torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trained(images):
    return SuperSimpleNet(tiny()).fit(images, progress=False)


# ------------------------------------------------------------------ Perlin masks


def test_perlin_scales_keep_the_papers_ratio():
    assert perlin_scales(64, 64) == 6          # the paper: 2**0 .. 2**5 cells on its 64 x 64 grid
    assert perlin_scales(32, 32) == 5 and perlin_scales(33, 40) == 6 and perlin_scales(16, 20) == 4


def test_perlin_mask_is_the_noise_above_the_threshold():
    # With zero_prob 0 the mask is exactly perlin_noise > threshold, for the lattice drawn first.
    gen, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    masks = perlin_masks(4, 16, 16, threshold=0.2, zero_prob=0.0, generator=gen)
    for mask in masks:
        ky, kx = torch.randint(0, perlin_scales(16, 16), (2,), generator=twin).tolist()
        expected = perlin_noise(16, 16, (2 ** ky, 2 ** kx), twin) > 0.2
        torch.rand((), generator=twin)  # the zeroing draw
        assert torch.equal(mask, expected)


# SuperSimpleNet's masks for these seeds, as its generator drew them when its figures were made: the
# random stream (lattice, noise, emptying draw per image) must not change under it.
RECORDED_SUMS = {(8, 16, 16, 7, 0.2, 0.5): [73, 0, 0, 91, 0, 0, 30, 83],
                 (6, 12, 20, 3, 0.0, 0.3): [0, 0, 0, 127, 125, 0],
                 (5, 12, 20, 3, 0.2, 0.0): [77, 60, 70, 82, 58]}
RECORDED_MASK = ["0000000011111110", "0000000000000111", "0000000000000000", "1111111111111100",
                 "0000000000000000", "0000000000000000", "1111110000000000", "1111000000000000",
                 "0000000000000000", "0001111111111111", "0001111111111000", "0000000000001111",
                 "0000000000000000", "0111111111110000", "0001111111111110", "0000111111000001"]


def test_perlin_masks_keep_supersimplenets_random_stream():
    for (batch, h, w, seed, threshold, zero_prob), sums in RECORDED_SUMS.items():
        masks = perlin_masks(batch, h, w, threshold, zero_prob, torch.Generator().manual_seed(seed))
        assert masks.flatten(1).sum(1).tolist() == sums
    masks = perlin_masks(8, 16, 16, 0.2, 0.5, torch.Generator().manual_seed(7))
    assert ["".join(str(int(v)) for v in row) for row in masks[3].tolist()] == RECORDED_MASK


def test_perlin_coverage_falls_with_the_threshold():
    gen = torch.Generator().manual_seed(0)
    coverage = [perlin_masks(200, 16, 16, t, 0.0, gen).float().mean().item() for t in (-2.0, 0.0, 0.2, 0.6, 2.0)]
    assert coverage[0] == 1.0 and coverage[-1] == 0.0   # beyond the noise's range: all or nothing
    assert 0.35 < coverage[1] < 0.65                    # Perlin noise is symmetric about 0
    assert coverage[1] > coverage[2] > coverage[3] > 0


def test_masks_are_emptied_with_probability_zero_prob():
    # Threshold below the noise's range: a mask is full unless it was emptied.
    masks = perlin_masks(2000, 4, 4, threshold=-2.0, zero_prob=0.5, generator=torch.Generator().manual_seed(1))
    empty = (masks.flatten(1).sum(1) == 0).float().mean().item()
    assert (masks.flatten(1).all(1) | (masks.flatten(1).sum(1) == 0)).all()
    assert abs(empty - 0.5) < 0.04       # 2000 draws: standard error 0.011
    none = perlin_masks(50, 4, 4, -2.0, 0.0, torch.Generator().manual_seed(1))
    assert none.all()


def test_generator_doubles_noises_inside_the_mask_only_and_labels_it():
    torch.manual_seed(0)
    features = torch.randn(3, 8, 8, 5)
    real = torch.zeros(3, 8, 8)
    real[0, :2, :2] = 1
    gen = PerlinAnomalyGenerator(sigma=1.0, threshold=0.0, zero_prob=0.0)
    noised, extra, masks, labels = gen(features, real, torch.tensor([1.0, 0, 0]), extra=features * 2,
                                       generator=torch.Generator().manual_seed(0))
    assert noised.shape == (6, 8, 8, 5) and masks.shape == (6, 8, 8) and labels.shape == (6,)
    doubled = torch.cat([features, features])
    changed = (noised != doubled).any(-1)
    synthetic = masks.bool() & ~torch.cat([real, real]).bool()
    assert torch.equal(changed, synthetic)                      # noise exactly where the synthetic mask is
    assert torch.allclose(extra - 2 * doubled, noised - doubled, atol=1e-6)   # the same noise on both
    assert masks[0, :2, :2].all() and masks[3, :2, :2].all()    # the real defect stays labelled ...
    assert not changed[0, :2, :2].any()                         # ... and is never noised on top
    assert torch.equal(labels, (masks.flatten(1).amax(1) > 0).float())


# ------------------------------------------------------------------ heads and losses


def test_heads_shapes_and_stop_grad():
    head = SegmentationDetectionModule(dim=6, seg_hidden=8, cls_channels=4, cls_kernel=5, stop_grad=True)
    x = torch.randn(2, 5, 7, 6)
    amap, score = head(x)
    assert amap.shape == (2, 5, 7) and score.shape == (2,)
    assert head.cls.fc.in_features == 2 * 4 + 2
    assert head.cls.pooled(x, amap).shape == (2, 10)
    score.sum().backward()                 # the image loss does not reach the segmentation head ...
    assert all(p.grad is None for p in head.seg.parameters())
    head.zero_grad()
    head.stop_grad = False                 # ... unless supervised training turns stop_grad off
    head(x)[1].sum().backward()
    assert head.seg.tail.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        ClassificationHead(6, 4, kernel=4)


def test_classification_head_reads_max_and_mean_of_map():
    head = ClassificationHead(dim=2, channels=3, kernel=3)
    amap = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])
    pooled = head.pooled(torch.zeros(1, 2, 2, 2), amap)
    assert pooled[0, -2:].tolist() == [6.0, 3.0]


def test_focal_loss_against_hand_values():
    # logit 0 -> p = 0.5: ln 2 * 0.5**4; logit ln 3 -> p = 0.75, right: -ln 0.75 * 0.25**4, wrong: -ln 0.25 * 0.75**4
    logits = torch.tensor([0.0, math.log(3), math.log(3)])
    targets = torch.tensor([1.0, 1.0, 0.0])
    hand = (math.log(2) * 0.5 ** 4 - math.log(0.75) * 0.25 ** 4 - math.log(0.25) * 0.75 ** 4) / 3
    assert focal_loss(logits, targets, gamma=4).item() == pytest.approx(hand, rel=1e-6)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert focal_loss(logits, targets, gamma=0).item() == pytest.approx(bce.item(), rel=1e-6)


def test_signed_truncated_l1_against_hand_values():
    logits, targets = torch.tensor([-1.0, 0.0, 0.2, 1.0]), torch.tensor([0.0, 0.0, 1.0, 1.0])
    # normal: max(0, 0.5 - 1) = 0 and 0.5, mean 0.25; anomalous: 0.3 and 0, mean 0.15
    assert signed_truncated_l1(logits, targets, 0.5).item() == pytest.approx(0.40)
    assert signed_truncated_l1(logits[:2], targets[:2], 0.5).item() == pytest.approx(0.25)   # no anomalies
    total, parts = SuperSimpleNetLoss()(logits.view(1, 2, 2), torch.tensor([0.0]), targets.view(1, 2, 2),
                                        torch.tensor([1.0]))
    assert total.item() == pytest.approx(sum(parts.values()), rel=1e-6)


def test_upscaled_features_and_mask_downsampling():
    maps = [torch.ones(2, 3, 4, 4), torch.full((2, 5, 2, 2), 2.0)]
    features = upscaled_features(maps, upscale=2, patch_size=3)
    assert features.shape == (2, 8, 8, 8)                       # [B, 2h, 2w, C1 + C2]
    assert torch.allclose(features[:, 1:-1, 1:-1, :3], torch.ones(1))    # constants stay constant inside
    assert torch.allclose(features[0, 0, 0, 3], torch.tensor(2.0 * 4 / 9))   # zero padding counted at a corner
    mask = torch.zeros(1, 16, 16)
    mask[0, :8, :8] = 1
    assert downsample_masks(mask, (4, 4))[0].tolist() == [[1, 1, 0, 0]] * 2 + [[0, 0, 0, 0]] * 2


def test_lr_steps_down_at_80_and_90_percent():
    milestones = [80, 90]
    assert [lr_factor(s, milestones, 0.4) for s in (0, 79, 80, 89, 90, 99)] == \
        pytest.approx([1, 1, 0.4, 0.4, 0.16, 0.16])


def test_configurations():
    paper = SuperSimpleNetConfig.paper()
    assert (paper.backbone, paper.image_size, paper.upscale, paper.epochs, paper.batch_size) == \
        ("wide_resnet50_2", 256, 2, 300, 32)
    assert (paper.lr_adaptor, paper.lr_seg, paper.lr_cls, paper.lr_gamma, paper.lr_milestones) == \
        (1e-4, 2e-4, 2e-4, 0.4, (0.8, 0.9))
    assert (paper.noise_std, paper.noise_scale, paper.perlin_threshold, paper.seg_hidden, paper.cls_channels) == \
        (0.015, "absolute", 0.2, 1024, 128)
    assert SuperSimpleNetConfig.from_dict(paper.to_dict()) == paper
    with pytest.raises(InputError, match="cls_features"):
        SuperSimpleNetConfig(cls_features="both")


# ------------------------------------------------------------------ the model


def test_fit_predict_shapes_and_state(trained, images):
    scores, maps = trained.predict(images[:3])
    assert scores.shape == (3,) and maps.shape == (3, 64, 64)
    assert ((scores > 0) & (scores < 1)).all()                  # the sigmoid of the classification head
    assert trained.grid() == (8, 8) and not trained.supervised and trained.head.stop_grad
    assert trained.sigma == pytest.approx(trained.config.noise_std * trained.feature_std)
    assert trained.n_train == 6 and trained.n_holdout == 2 and trained.threshold_normal is not None
    assert trained.history[-1]["step"] == 6
    assert trained.history[-1]["lr_factor"] == pytest.approx(0.16)


def test_same_seed_same_scores(trained, images):
    again = SuperSimpleNet(tiny()).fit(images, progress=False)
    assert torch.equal(trained.predict(images)[0], again.predict(images)[0])


def test_save_load_round_trip_and_checkpoint_kinds(trained, images, tmp_path):
    path = trained.save(tmp_path / "ssn.pt")
    assert checkpoint_kind(path) == "supersimplenet"
    for loaded in (SuperSimpleNet.load(path), load_model(path)):
        assert isinstance(loaded, SuperSimpleNet)
        s1, m1 = trained.predict(images)
        s2, m2 = loaded.predict(images)
        assert torch.equal(s1, s2) and torch.equal(m1, m2)
        assert loaded.config == trained.config and loaded.threshold_normal == trained.threshold_normal
    with pytest.raises(InputError, match="supersimplenet checkpoint"):
        SimpleNet.load(path)
    simple = SimpleNet(SimpleNetConfig.quick(image_size=64, pretrain_embed_dim=32, target_embed_dim=32,
                                             dsc_hidden=32, steps=2, device="cpu")).fit(images, progress=False)
    simple_path = simple.save(tmp_path / "simple.pt")
    assert checkpoint_kind(simple_path) == "simplenet" and isinstance(load_model(simple_path), SimpleNet)
    with pytest.raises(InputError, match="simplenet checkpoint, not a supersimplenet one"):
        SuperSimpleNet.load(simple_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["simple.pt", "ssn.pt"]


def test_supervised_with_tensor_masks(images):
    masks = torch.zeros(8, 64, 64)
    masks[0, 8:24, 8:24] = 1
    model = SuperSimpleNet(tiny(steps=2)).fit(images, masks=masks, progress=False)
    assert model.supervised and not model.head.stop_grad and model.n_anomalous_train == 1
    assert model.n_holdout == 2 and model.n_train == 6            # only normal images are held out


def test_supervised_folder_layout(tmp_path):
    root = make_demo_dataset(tmp_path / "demo", "brick", image_size=64, n_train=6, n_test_good=2,
                             n_test_per_defect=2)
    images, masks = read_anomalous_training_set(root, (64, 64), (64, 64))
    assert len(images) == 0 and masks.shape == (0, 64, 64)          # only train/good: unsupervised
    (root / "train" / "hole").mkdir()
    source = sorted((root / "test" / "hole").iterdir())[0]
    shutil.copy(source, root / "train" / "hole" / "t000.png")
    with pytest.raises(InputError, match="mask file missing"):
        read_anomalous_training_set(root, (64, 64), (64, 64))
    shutil.copy(root / "ground_truth" / "hole" / f"{source.stem}_mask.png",
                root / "ground_truth" / "hole" / "t000_mask.png")
    images, masks = read_anomalous_training_set(root, (64, 64), (64, 64))
    assert images.shape == (1, 3, 64, 64) and masks[0].sum() > 0
    model = SuperSimpleNet(tiny(steps=2)).fit(root, progress=False)
    assert model.supervised and model.n_anomalous_train == 1
    model = SuperSimpleNet(tiny(steps=2, supervised="never")).fit(root, progress=False)
    assert not model.supervised and model.n_anomalous_train == 0
    shutil.copy(source, root / "train" / "hole" / source.name)   # same name as a test image
    with pytest.raises(InputError, match="both"):
        read_anomalous_training_set(root, (64, 64), (64, 64))


# ------------------------------------------------------------------ the command line


def test_cli_train_predict_evaluate_with_supersimplenet(tmp_path, capsys):
    import csv
    import json

    from simplenet_edu.apps.cli import main

    root = make_demo_dataset(tmp_path / "demo", "grass", image_size=64, n_train=6, n_test_good=2,
                             n_test_per_defect=1)
    fast = ["--model", "supersimplenet", "--preset", "quick", "--image-size", "64", "--steps", "3", "--device", "cpu"]
    checkpoint = tmp_path / "ssn.pt"
    assert main(["--quiet", "train", "--data", str(root), *fast, "--output", str(checkpoint)]) == 0
    assert checkpoint_kind(checkpoint) == "supersimplenet"
    # predict and evaluate read the kind from the checkpoint: no --model needed
    assert main(["--quiet", "predict", "--checkpoint", str(checkpoint), "--images", str(root / "test" / "hole"),
                 "--output-dir", str(tmp_path / "pred"), "--device", "cpu"]) == 0
    assert len(list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))) == 1
    report = tmp_path / "report.json"
    assert main(["--quiet", "evaluate", "--data", str(root), "--checkpoint", str(checkpoint), "--device", "cpu",
                 "--output", str(report)]) == 0
    values = json.loads(report.read_text())
    assert values["model"] == "supersimplenet" and values["config"]["steps"] == 3 and values["n_train"] == 6
    assert values["threshold_calibration"]["method"] == "out-of-fold" and values["n_holdout"] == 0
    capsys.readouterr()
    assert main(["--quiet", "train", "--data", str(root), *fast, "--generator", "perlin"]) == 2
    assert "--generator: is a SimpleNet option" in capsys.readouterr().err


def test_map_max_init_starts_the_image_logit_at_the_maps_maximum():
    head = ClassificationHead(dim=3, channels=4, kernel=3, init="map_max")
    features, amap = torch.randn(2, 5, 5, 3), torch.randn(2, 5, 5)
    assert torch.allclose(head(features, amap), amap.flatten(1).amax(1))


def test_feature_bank_only_where_it_is_small(images):
    # Upscale 1 caches the features themselves (2.2x the maps); upscale 2 rebuilds them every step
    # from the cached maps (8.9x): both train to the same kind of model.
    small = SuperSimpleNet(tiny(steps=1))
    maps = small.extract(images)
    assert small._feature_bank(maps).shape == (8, 8, 8, small.dim)
    fine = SuperSimpleNet(tiny(steps=2, upscale=2))
    assert fine._feature_bank(maps) is None
    fine.fit(images, progress=False)
    assert fine.grid() == (16, 16) and fine.predict(images[:2])[1].shape == (2, 64, 64)


def test_cli_builds_supersimplenet_configs():
    from simplenet_edu.apps.cli import build_config, build_parser

    def config(*options):
        return build_config(build_parser().parse_args(["train", "--data", "x", "--model", "supersimplenet", *options]))

    assert config() == SuperSimpleNetConfig(seed=0)
    paper = config("--preset", "paper", "--steps", "5", "--image-size", "128")
    assert (paper.steps, paper.epochs, paper.image_size, paper.backbone) == (5, None, 128, "wide_resnet50_2")
    assert (config("--epochs", "3").steps, config("--epochs", "3").epochs) == (None, 3)
    with pytest.raises(InputError, match="one positive integer"):
        config("--image-size", "64", "96")
    assert config("--noise-std", "0.5").noise_std == 0.5
    with pytest.raises(InputError, match="--select: is a SimpleNet option"):
        config("--select", "validation")
    with pytest.raises(InputError, match="--noise-std: must be positive"):
        config("--noise-std", "0")


def test_benchmark_job_trains_a_supersimplenet(tmp_path):
    from simplenet_edu.apps.benchmark import run_job

    root = make_demo_dataset(tmp_path / "demo", "brick", image_size=64, n_train=5, n_test_good=2,
                             n_test_per_defect=1)
    report = run_job(root, tiny(steps=2).to_dict(), seed=1, model_kind="supersimplenet")
    assert report["model"] == "supersimplenet" and report["config"]["seed"] == 1
    assert 0.0 <= report["image_auroc"] <= 1.0
