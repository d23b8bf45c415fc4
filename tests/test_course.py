"""The course helpers: environment switches, data and configuration choice, the model cache."""

import json
import warnings

import pytest
import torch

from simplenet_edu import InputError, course, data
from simplenet_edu.simplenet.model import SimpleNet
from simplenet_edu.simplenet.config import SimpleNetConfig

ENV = ("SIMPLENET_EDU_QUICK", "SIMPLENET_EDU_PAPER", "SIMPLENET_EDU_DATA", "SIMPLENET_EDU_HOME")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment whose course home is a temporary folder."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIMPLENET_EDU_HOME", str(tmp_path))
    return monkeypatch


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """A 64 px demo set with 4 training images: enough to train one pass in seconds."""
    root = tmp_path_factory.mktemp("tiny")
    return data.make_demo_dataset(root, "brick", image_size=64, n_train=4, n_test_good=1, n_test_per_defect=1)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_quick_mode_reads_the_flag(env, value, expected):
    env.setenv("SIMPLENET_EDU_QUICK", value)
    assert course.quick_mode() is expected


def test_quick_mode_is_off_without_the_variable(env):
    assert course.quick_mode() is False
    assert course.paper_mode() is False


def test_a_garbled_flag_is_a_user_error(env):
    env.setenv("SIMPLENET_EDU_QUICK", "maybe")
    with pytest.raises(InputError, match="SIMPLENET_EDU_QUICK.*'maybe'"):
        course.quick_mode()


def test_course_config_follows_the_mode(env):
    assert course.course_config() == SimpleNetConfig(device="auto")
    env.setenv("SIMPLENET_EDU_QUICK", "1")
    assert course.course_config() == SimpleNetConfig.quick()
    assert course.course_config(epochs=3).epochs == 3
    env.setenv("SIMPLENET_EDU_QUICK", "0")
    env.setenv("SIMPLENET_EDU_PAPER", "1")
    paper = course.course_config()
    assert (paper.backbone, paper.crop_size, paper.device) == ("wide_resnet50_2", 288, "auto")


def test_course_config_refuses_both_modes_and_unknown_fields(env):
    with pytest.raises(InputError, match="no_such_field"):
        course.course_config(no_such_field=1)
    env.setenv("SIMPLENET_EDU_QUICK", "1")
    env.setenv("SIMPLENET_EDU_PAPER", "1")
    with pytest.raises(InputError, match="both set"):
        course.course_config()


def test_course_data_uses_the_chosen_folder(env, tiny_set):
    env.setenv("SIMPLENET_EDU_DATA", str(tiny_set))
    assert course.course_data() == tiny_set


def test_course_data_names_the_variable_when_the_folder_is_wrong(env, tmp_path):
    env.setenv("SIMPLENET_EDU_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="SIMPLENET_EDU_DATA.*nowhere.*not found"):
        course.course_data()


def test_course_data_is_the_shipped_real_set_by_default(env):
    root = course.course_data()
    assert root == course.shipped_data() and root.name == course.COURSE_SET
    assert root.parent.name == "data" and (root.parent.parent / "pyproject.toml").is_file()
    test = data.MVTecDataset(root, "test", image_size=64)
    assert len(data.MVTecDataset(root, "train", image_size=64)) == 28
    assert sorted(set(test.defect_types)) == ["colour", "good"]
    assert test.defect_types.count("good") == 6 and test.defect_types.count("colour") == 17


def test_demo_data_paints_the_small_texture_set_under_home(env, tmp_path):
    env.setenv("SIMPLENET_EDU_QUICK", "1")
    root = course.demo_data()
    assert root == tmp_path / "data" / "demo-quick" / "brick"
    train = data.MVTecDataset(root, "train", image_size=course.DEMO_QUICK["image_size"])
    assert len(train) == 20
    assert data.load_image(train.paths[0], 128).shape == (3, 128, 128)
    test = data.MVTecDataset(root, "test", image_size=128)
    assert len(test) == 8 + 4 * 3


def test_painted_data_adds_one_painted_copy_of_each_normal_test_image_per_defect(env, tmp_path, tiny_set):
    env.setenv("SIMPLENET_EDU_DATA", str(tiny_set))
    root = course.painted_data(defects=("hole", "scratch"))
    assert root == tmp_path / "data" / "painted" / tiny_set.name
    good = data.list_images(tiny_set / "test" / "good")                     # one normal test image
    test = data.MVTecDataset(root, "test", image_size=64)
    assert test.defect_types.count("painted_hole") == test.defect_types.count("painted_scratch") == len(good) == 1
    assert test.defect_types.count("hole") == 1, "the source's own defect folders are kept"
    original = data.load_image(good[0], 64)
    for defect in ("hole", "scratch"):
        painted = data.load_image(root / "test" / f"painted_{defect}" / f"{good[0].stem}.png", 64)
        mask = test[test.defect_types.index(f"painted_{defect}")]["mask"]
        assert 0.002 < mask.mean().item() < 0.08, "a painted defect covers 0.5 % to 5 % of the image"
        changed = (painted - original).abs().amax(0) > 0.1                   # [64, 64]
        assert changed[mask == 0].float().mean() < 0.02, "the copy differs from its normal image at the defect only"
        assert changed[mask == 1].float().mean() > 0.3
    files = {p.relative_to(root): p.read_bytes() for p in root.rglob("*.png")}
    mtime = (root / ".complete").stat().st_mtime_ns
    assert course.painted_data(defects=("hole", "scratch")) == root and (root / ".complete").stat().st_mtime_ns == mtime
    again = course.painted_data(defects=("hole", "scratch"), seed=0)
    assert {p.relative_to(again): p.read_bytes() for p in again.rglob("*.png")} == files, "same seed, same files"
    course.painted_data(defects=("hole",), seed=1)                           # another recipe: made again
    assert not (root / "test" / "painted_scratch").exists()


def test_painted_data_refuses_unknown_defects_and_a_set_without_normal_test_images(env, tmp_path, tiny_set):
    with pytest.raises(InputError, match="defects.*crack, hole, scratch, stain.*'dent'"):
        course.painted_data(tiny_set, defects=("dent",))
    bare = tmp_path / "bare"
    (bare / "train" / "good").mkdir(parents=True)
    for path in data.list_images(tiny_set / "train" / "good"):
        (bare / "train" / "good" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="test/good"):
        course.painted_data(bare)


def test_cache_key_changes_with_config_and_data_but_not_device(tiny_set, tmp_path):
    config = SimpleNetConfig.quick()
    key = course.cache_key(config, tiny_set)
    assert len(key) == 16 and key == course.cache_key(SimpleNetConfig.quick(), tiny_set)
    assert key == course.cache_key(SimpleNetConfig.quick(device="cpu"), tiny_set)
    assert key != course.cache_key(SimpleNetConfig.quick(epochs=99), tiny_set)
    other = data.make_demo_dataset(tmp_path, "brick", image_size=64, n_train=5, n_test_good=1, n_test_per_defect=1)
    assert key != course.cache_key(config, other)


def test_cache_key_changes_with_the_training_code(tiny_set, monkeypatch):
    # A model cached before model.py changed must not be served after it.
    key = course.cache_key(SimpleNetConfig.quick(), tiny_set)
    version = course.training_code_version()
    assert len(version) == 12 and all(c in "0123456789abcdef" for c in version)
    monkeypatch.setattr(course.settings, "training_code_version", lambda: "0" * 12)
    assert course.cache_key(SimpleNetConfig.quick(), tiny_set) != key


def test_course_model_trains_once_then_loads(env, tmp_path, tiny_set):
    config = SimpleNetConfig.quick(image_size=64, epochs=1, device="cpu")
    first = course.course_model(config, tiny_set, progress=False)
    path = course.cache_path(config, tiny_set)
    assert path.is_file() and path.parent == tmp_path / "data" / "cache"
    assert len(first.history) == 1

    def no_training(self, *args, **kwargs):
        raise AssertionError("course_model retrained although the cache was there")

    env.setattr(SimpleNet, "fit", no_training)
    second = course.course_model(config, tiny_set, progress=False)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(first.predict(images)[0], second.predict(images)[0], atol=1e-5)
    assert second.history == first.history


def test_course_model_replaces_an_unreadable_cache(env, tiny_set):
    config = SimpleNetConfig.quick(image_size=64, epochs=1, device="cpu")
    path = course.cache_path(config, tiny_set)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="retraining"):
        model = course.course_model(config, tiny_set, progress=False)
    assert model.sigma is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert course.course_model(config, tiny_set, progress=False).sigma == pytest.approx(model.sigma)


def test_patch_labels_by_hand():
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :2] = 1          # the whole top-left 2x2 cell
    mask[0, 2, 2] = 1            # a quarter of the bottom-right cell
    labels = course.patch_labels(mask, (2, 2))
    assert labels.tolist() == [[True, False, False, False]]
    assert course.patch_labels(mask, (2, 2), min_fraction=0.25).tolist() == [[True, False, False, True]]
    with pytest.raises(InputError, match="masks"):
        course.patch_labels(mask[0], (2, 2))


def test_nearest_distances_by_hand():
    bank = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    queries = torch.tensor([[3.0, 4.0], [10.0, 1.0], [6.0, 0.0]])
    assert course.nearest_distances(queries, bank, chunk=2).tolist() == pytest.approx([5.0, 1.0, 4.0])


def test_receptive_field_of_a_3x3_convolution():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, kernel_size=3, padding=1)

    class OneLayer(torch.nn.Module):
        def forward(self, images):
            return [conv(images)]

    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    field = course.receptive_field(OneLayer(), image, layer=0, cell=(4, 5))
    assert (field > 0).nonzero().amin(0).tolist() == [3, 4]
    assert (field > 0).nonzero().amax(0).tolist() == [5, 6]
    assert int((field > 0).sum()) == 9


def test_folder_tree_lists_every_folder(tiny_set):
    tree = course.folder_tree(tiny_set)
    assert tree.splitlines()[0] == "brick/"
    assert "    train/" in tree and "        good/  (4 images: 000.png, 001.png, ...)" in tree


def test_settings_table_reads_the_presets(env):
    env.setenv("SIMPLENET_EDU_QUICK", "1")
    header, quick_row, default_row, paper_row = course.settings_table().splitlines()
    quick, default, paper = SimpleNetConfig.quick(), SimpleNetConfig(), SimpleNetConfig.paper()
    assert header.split()[:3] == ["setting", "input", "backbone"]
    assert quick_row.startswith("SIMPLENET_EDU_QUICK=1") and quick_row.endswith("<- this session")
    assert f"{quick.steps} steps of {quick.batch_size} patches" in quick_row and " 128 px " in quick_row
    assert f" {default.adaptor} " in default_row and f" {default.loss} " in default_row and "<-" not in default_row
    assert f"{paper.epochs} passes of {paper.batch_size} patches" in paper_row
    assert "329 px -> crop 288 px" in paper_row and "0.015 (absolute)" in paper_row


def test_the_papers_table_averages_to_its_headline_numbers():
    assert set(course.PAPER_MVTEC_AD) == set(data.MVTEC_CATEGORIES)
    image = sum(i for i, _ in course.PAPER_MVTEC_AD.values()) / 15
    pixel = sum(p for _, p in course.PAPER_MVTEC_AD.values()) / 15
    assert (round(image, 1), round(pixel, 1)) == (99.6, 98.1)


def _suite_file(path, command, image, aupro):
    """A results file of benchmarks.suite with one (mean, std) per set: ``image``/``aupro`` lists in
    the order of course.SUITE_SETS (None: the set has no masks)."""
    per_set = {name: {"image_auroc": [i, 0.0], "aupro": None if a is None else [a, 0.01]}
               for name, i, a in zip(course.SUITE_SETS, image, aupro)}
    path.write_text(json.dumps({"command": command, "summary": {"per_set": per_set}}))


def test_suite_results_read_the_runs_and_the_peers_rows(monkeypatch, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _suite_file(results / "suite_default.json", "python benchmarks/suite.py ", [1.0, 0.9, 0.8, 0.7], [0.9, 0.8, 0.7, None])
    _suite_file(results / "suite_supersimplenet.json", "python -m benchmarks.suite --name s", [0.5] * 4, [0.5, 0.5, 0.5, None])
    (results / "default_sweep.md").write_text(
        "| recipe | a | b | c | d | mean img |\n|---|---|---|---|---|---|\n"
        "| nearest neighbour on the same features (nothing trained) | 0.9 / 0.95 | 0.8 / 0.7 | 0.7 / 0.6 | 0.6 | 0.75 |\n"
        "| PatchCore (anomalib 2.7) | 0.95 / 0.5 | 1.0 / 0.9 | 0.6 / 0.8 | 0.81 | 0.84 |\n")
    monkeypatch.setattr(course.results, "RESULTS", results)
    found = course.suite_results()
    rows = found["rows"]
    assert rows["SimpleNet (CPU default)"]["metal_plate"] == {"image_auroc": 0.9, "aupro": 0.8}
    assert rows["SimpleNet (CPU default)"]["solar_cell"] == {"image_auroc": 0.7, "aupro": None}
    assert rows["PatchCore"]["cookie"] == {"image_auroc": 0.6, "aupro": 0.8}
    assert rows["nearest neighbour"]["solar_cell"] == {"image_auroc": 0.6, "aupro": None}
    assert "`python -m benchmarks.suite`" in found["made_by"]["SimpleNet (CPU default)"]
    table = course.suite_table(found).splitlines()
    simplenet = next(line for line in table if line.startswith("SimpleNet"))
    patchcore = next(line for line in table if line.startswith("PatchCore"))
    # hazelnut_toy: SimpleNet's image AUROC 1.0 is the highest, the nearest neighbour's AUPRO 0.95;
    # means: SimpleNet image 0.85 and AUPRO 0.8 (both the highest: the nearest neighbour's AUPRO mean is
    # 0.75); PatchCore's means: image (0.95 + 1.0 + 0.6 + 0.81) / 4, AUPRO (0.5 + 0.9 + 0.8) / 3.
    assert "1.000* / 0.900 " in simplenet and "0.850* / 0.800*" in simplenet
    assert "0.950  / 0.500 " in patchcore and "0.840  / 0.733 " in patchcore
    (results / "suite_supersimplenet.json").unlink()
    with pytest.raises(InputError, match="suite_supersimplenet.json"):
        course.suite_results()
