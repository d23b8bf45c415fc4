"""Tests of simplenet_edu.data against values worked out by hand."""

import hashlib
import io
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simplenet_edu.data import (
    DEMO_CATEGORIES,
    DEMO_DEFECTS,
    ImageFolderDataset,
    MVTecDataset,
    check_mvtec_folder,
    download_mvtec,
    list_images,
    load_image,
    make_demo_dataset,
    split_holdout,
    stack,
)
from simplenet_edu.utils.errors import InputError


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def solid(colour, size=(16, 16)) -> Image.Image:
    return Image.new("RGB", size, colour)


def left_half_mask(size=(16, 16)) -> Image.Image:
    pixels = np.zeros((size[1], size[0]), np.uint8)
    pixels[:, : size[0] // 2] = 255
    return Image.fromarray(pixels)


def make_tiny_mvtec(root: Path) -> Path:
    """3 train images; test: crack x2, good x2, hole x1; masks cover the left half."""
    for i in range(3):
        save(solid((10, 20, 30)), root / f"train/good/{i:03d}.png")
    for kind, count in (("good", 2), ("crack", 2), ("hole", 1)):
        for i in range(count):
            save(solid((200, 100, 0)), root / f"test/{kind}/{i:03d}.png")
            if kind != "good":
                save(left_half_mask(), root / f"ground_truth/{kind}/{i:03d}_mask.png")
    (root / "train/good/notes.txt").write_text("not an image")
    return root


# --- image modes -----------------------------------------------------------------------------


def test_grayscale_image_becomes_three_equal_channels(tmp_path):
    path = save(Image.new("L", (8, 8), 51), tmp_path / "gray.png")
    image = load_image(path, 8)
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full((3, 8, 8), 51 / 255))


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    path = save(Image.new("RGBA", (8, 8), (10, 20, 30, 0)), tmp_path / "rgba.png")
    assert load_image(path, 8)[:, 0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])


def test_palette_image_uses_its_palette(tmp_path):
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    assert load_image(save(image, tmp_path / "p.png"), 8)[:, 3, 3].tolist() == [1.0, 0.0, 0.0]


def test_16_bit_image_is_scaled_not_clipped(tmp_path):
    values = np.full((4, 4), 65535, np.uint16)
    values[:, 2:] = 32896  # 32896 / 257 = 128 exactly
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    image = load_image(path, 4)
    assert torch.all(image[:, :, :2] == 1.0)
    assert torch.allclose(image[:, :, 2:], torch.full((3, 4, 2), 128 / 255))


@pytest.mark.parametrize(
    "image, expected",
    [
        (Image.new("1", (4, 4), 1), 1.0),
        (Image.new("LA", (4, 4), (128, 7)), 128 / 255),
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), 1.0),
        (Image.new("I", (4, 4), 65535), 1.0),
    ],
    ids=["1", "LA", "CMYK", "I"],
)
def test_other_modes_become_rgb(tmp_path, image, expected):
    path = save(image, tmp_path / "x.tif")
    assert torch.allclose(load_image(path, 4), torch.full((3, 4, 4), expected))


# --- resize and crop -------------------------------------------------------------------------


def test_resize_makes_a_square_and_keeps_a_flat_colour(tmp_path):
    path = save(solid((255, 0, 51), size=(40, 20)), tmp_path / "wide.png")
    image = load_image(path, 16)
    assert image.shape == (3, 16, 16)
    assert torch.allclose(image[0], torch.ones(16, 16))
    assert torch.allclose(image[2], torch.full((16, 16), 0.2))


def test_centre_crop_329_to_288_starts_at_pixel_20(tmp_path):
    x = np.arange(329)
    pixels = np.zeros((329, 329, 3), np.uint8)
    pixels[..., 0] = (x % 256)[None, :]  # red encodes the column, green the row
    pixels[..., 1] = (x % 256)[:, None]
    image = load_image(save(Image.fromarray(pixels), tmp_path / "ramp.png"), 329, 288)
    assert image.shape == (3, 288, 288)
    # (329 - 288) // 2 = 20, so output pixel 0 is input pixel 20 and output 287 is input 307.
    assert image[0, 0, 0] * 255 == pytest.approx(20) and image[1, 0, 0] * 255 == pytest.approx(20)
    assert image[0, 287, 287] * 255 == pytest.approx(307 % 256)
    assert image[1, 287, 0] * 255 == pytest.approx(307 % 256)


def test_crop_larger_than_image_size_is_refused(tmp_path):
    path = save(solid((0, 0, 0)), tmp_path / "a.png")
    with pytest.raises(InputError, match="crop_size"):
        load_image(path, 16, 32)


# --- masks -----------------------------------------------------------------------------------


def one_line_set(root: Path, mask: np.ndarray) -> Path:
    save(solid((0, 0, 0), size=(100, 100)), root / "train/good/000.png")
    save(solid((0, 0, 0), size=(100, 100)), root / "test/dent/000.png")
    save(Image.fromarray(mask), root / "ground_truth/dent/000_mask.png")
    return root


def test_mask_is_resized_by_nearest_neighbour_and_stays_binary(tmp_path):
    mask = np.zeros((100, 100), np.uint8)
    mask[50, :] = 255  # a one-pixel line
    data = MVTecDataset(one_line_set(tmp_path, mask), "test", image_size=200)
    resized = data[0]["mask"]
    assert resized.shape == (200, 200) and set(resized.unique().tolist()) == {0.0, 1.0}
    # Doubling the size turns row 50 into rows 100 and 101, nothing else.
    assert resized.sum() == 400 and resized[100].all() and resized[101].all()


def test_mask_shrunk_by_nearest_neighbour_keeps_a_thin_line(tmp_path):
    mask = np.zeros((100, 100), np.uint8)
    mask[51, :] = 255
    resized = MVTecDataset(one_line_set(tmp_path, mask), "test", image_size=50)[0]["mask"]
    # Halving samples the odd rows (2 * 25 + 1 = 51); a bilinear filter would blur the line to 0.375.
    assert resized.sum() == 50 and resized[25].all()


def test_mask_is_binarised_at_half(tmp_path):
    mask = np.zeros((100, 100), np.uint8)
    mask[:, :50] = 127
    mask[:, 50:] = 128
    resized = MVTecDataset(one_line_set(tmp_path, mask), "test", image_size=100)[0]["mask"]
    assert resized[:, :50].sum() == 0 and resized[:, 50:].sum() == 50 * 100


# --- folder layout, labels -------------------------------------------------------------------


def test_labels_and_defect_types_follow_folders(tmp_path):
    root = make_tiny_mvtec(tmp_path / "tiny")
    train = MVTecDataset(root, "train", image_size=16)
    assert [p.name for p in train.paths] == ["000.png", "001.png", "002.png"]  # notes.txt is ignored
    assert train.labels.tolist() == [0, 0, 0] and train.has_masks

    test = MVTecDataset(root, "test", image_size=16)
    assert test.defect_types == ["crack", "crack", "good", "good", "hole"]  # folders sorted by name
    assert test.labels.tolist() == [1, 1, 0, 0, 1]
    crack, good = test[0], test[2]
    assert crack["label"] == 1 and crack["defect_type"] == "crack" and crack["path"].endswith("crack/000.png")
    assert crack["mask"][:, :8].sum() == 16 * 8 and crack["mask"][:, 8:].sum() == 0
    assert good["label"] == 0 and good["mask"].sum() == 0
    assert good["image"][:, 0, 0].tolist() == pytest.approx([200 / 255, 100 / 255, 0.0])


def test_dataset_crops_image_and_mask_alike(tmp_path):
    item = MVTecDataset(make_tiny_mvtec(tmp_path / "tiny"), "test", image_size=16, crop_size=8)[0]
    assert item["image"].shape == (3, 8, 8) and item["mask"].shape == (8, 8)
    # The crop keeps columns 4..11 of 16; the mask covers columns 0..7, so crop columns 0..3.
    assert item["mask"][:, :4].sum() == 8 * 4 and item["mask"][:, 4:].sum() == 0


def test_set_without_ground_truth_gives_empty_masks(tmp_path):
    root = make_tiny_mvtec(tmp_path / "tiny")
    for mask in (root / "ground_truth").rglob("*.png"):
        mask.unlink()
    for folder in sorted((root / "ground_truth").iterdir()):
        folder.rmdir()
    (root / "ground_truth").rmdir()
    test = MVTecDataset(root, "test", image_size=16)
    assert not test.has_masks and test[0]["label"] == 1 and test[0]["mask"].sum() == 0


def test_stack_loads_everything(tmp_path):
    data = stack(MVTecDataset(make_tiny_mvtec(tmp_path / "tiny"), "test", image_size=8), progress=False)
    assert data["images"].shape == (5, 3, 8, 8) and data["masks"].shape == (5, 8, 8)
    assert data["labels"].tolist() == [1, 1, 0, 0, 1] and data["labels"].dtype == torch.int64
    assert data["defect_types"][4] == "hole" and data["paths"][2].endswith("good/000.png")


def test_files_restricts_the_split(tmp_path):
    root = make_tiny_mvtec(tmp_path / "tiny")
    files = [root / "train/good/002.png", root / "train/good/000.png"]
    data = MVTecDataset(root, "train", image_size=8, files=files)
    assert [p.name for p in data.paths] == ["000.png", "002.png"] and len(data) == 2
    with pytest.raises(InputError, match="not an image of the train split"):
        MVTecDataset(root, "train", image_size=8, files=[root / "test/good/000.png"])


# --- bad input -------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        check_mvtec_folder(tmp_path / "nowhere")


def test_folder_without_train_good_suggests_the_category(tmp_path):
    make_tiny_mvtec(tmp_path / "hazelnut")
    with pytest.raises(InputError, match="train/good/ is missing") as error:
        MVTecDataset(tmp_path)
    assert str(error.value).startswith(str(tmp_path)) and str(tmp_path / "hazelnut") in str(error.value)


def test_empty_train_good(tmp_path):
    (tmp_path / "train/good").mkdir(parents=True)
    (tmp_path / "train/good/readme.txt").write_text("no images")
    with pytest.raises(InputError, match="no images") as error:
        check_mvtec_folder(tmp_path)
    assert str(tmp_path / "train" / "good") in str(error.value)


def test_truncated_jpeg_is_detected(tmp_path):
    root = make_tiny_mvtec(tmp_path / "tiny")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG")
    broken = root / "train/good/003.jpg"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    data = MVTecDataset(root, "train", image_size=16)
    with pytest.raises(InputError, match="cannot read image") as error:
        data[3]
    assert str(broken) in str(error.value)


def test_mask_of_another_size_is_refused(tmp_path):
    root = make_tiny_mvtec(tmp_path / "tiny")
    mask = root / "ground_truth/hole/000_mask.png"
    save(left_half_mask(size=(16, 17)), mask)
    data = MVTecDataset(root, "test", image_size=16)
    data[0]  # other masks are fine
    with pytest.raises(InputError, match="mask is 16x17 but its image") as error:
        data[4]
    assert str(error.value).startswith(str(mask))


def test_missing_mask_file_is_named(tmp_path):
    root = make_tiny_mvtec(tmp_path / "tiny")
    mask = root / "ground_truth/crack/001_mask.png"
    mask.unlink()
    with pytest.raises(InputError, match="mask file missing") as error:
        MVTecDataset(root, "test")
    assert str(error.value).startswith(str(mask))


# --- holdout and image folders ---------------------------------------------------------------


def test_split_holdout_is_deterministic_and_disjoint():
    paths = [Path(f"{i:03d}.png") for i in range(10)]
    train, holdout = split_holdout(paths, 0.3, seed=4)
    assert len(holdout) == 3 and len(train) == 7
    assert sorted(train + holdout) == paths and train == sorted(train)
    assert split_holdout(paths, 0.3, seed=4) == (train, holdout)
    assert len({tuple(split_holdout(paths, 0.3, seed=s)[1]) for s in range(10)}) > 1


@pytest.mark.parametrize("n, expected", [(1, 0), (2, 1), (5, 1), (10, 1), (25, 2)])
def test_split_holdout_sizes(n, expected):
    assert len(split_holdout([f"{i}.png" for i in range(n)], 0.1)[1]) == expected


def test_image_folder_dataset(tmp_path):
    save(solid((255, 255, 255), size=(30, 20)), tmp_path / "b.JPG")
    save(solid((0, 0, 0)), tmp_path / "a.png")
    (tmp_path / "c.txt").write_text("ignored")
    data = ImageFolderDataset(tmp_path, image_size=8)
    assert [Path(item["path"]).name for item in data] == ["a.png", "b.JPG"]
    assert data[1]["image"].shape == (3, 8, 8) and data[1]["image"].min() == 1.0
    assert list_images(tmp_path) == [tmp_path / "a.png", tmp_path / "b.JPG"]


def test_image_folder_dataset_refuses_missing_or_empty_folder(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        ImageFolderDataset(tmp_path / "nowhere", image_size=8)
    with pytest.raises(InputError, match="no images"):
        ImageFolderDataset(tmp_path, image_size=8)


# --- demo data set ---------------------------------------------------------------------------

SMALL = dict(image_size=64, n_train=3, n_test_good=2, n_test_per_defect=2)


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_is_deterministic(tmp_path):
    first = file_bytes(make_demo_dataset(tmp_path / "a", "grass", seed=3, **SMALL))
    second = file_bytes(make_demo_dataset(tmp_path / "b", "grass", seed=3, **SMALL))
    other = file_bytes(make_demo_dataset(tmp_path / "c", "grass", seed=4, **SMALL))
    assert len(first) == 3 + 2 + 4 * 2 * 2 + 1  # images, masks and the .complete file
    assert first == second
    assert first.keys() == other.keys() and first["train/good/000.png"] != other["train/good/000.png"]


def test_demo_layout_masks_and_colour(tmp_path):
    root = make_demo_dataset(tmp_path, "brick")
    assert root == tmp_path / "brick" and sorted(p.name for p in tmp_path.iterdir()) == ["brick"]
    assert len(list_images(root / "train/good")) == 40 and len(list_images(root / "test/good")) == 12
    train = pixels(root / "train/good/000.png").astype(np.float64)
    assert train.shape == (256, 256, 3) and train[..., 0].mean() > train[..., 2].mean() + 20  # tinted red
    for defect in DEMO_DEFECTS:
        assert len(list_images(root / "test" / defect)) == 6
        for i in range(6):
            mask = pixels(root / f"ground_truth/{defect}/{i:03d}_mask.png")
            assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
            assert 0.005 <= (mask == 255).mean() <= 0.05
            # The defect changes what it covers: its pixels stand out from the image's median.
            image = pixels(root / f"test/{defect}/{i:03d}.png").astype(np.float64)
            offset = np.abs(image - np.median(image, axis=(0, 1))).sum(axis=2)
            assert offset[mask == 255].mean() > 1.5 * offset[mask == 0].mean()
    test = MVTecDataset(root, "test", image_size=64)
    assert len(test) == 12 + 24 and test.labels.sum() == 24 and test.has_masks


def test_demo_defects_are_redrawn_until_their_area_fits():
    from simplenet_edu.data import _normal_crop, _paint_defect, _texture

    texture = _texture("brick", 256)
    for index in range(40):  # about one crack in sixteen comes out too short at first
        rng = np.random.default_rng([0, index])
        _, mask = _paint_defect(_normal_crop(texture, 256, rng), "crack", rng)
        assert 0.005 <= mask.mean() <= 0.05


def test_demo_is_reused_regenerated_or_refused(tmp_path):
    root = make_demo_dataset(tmp_path, "gravel", **SMALL)
    sentinel = root / "train/good/sentinel.txt"
    sentinel.write_text("left alone when the recipe matches")
    assert make_demo_dataset(tmp_path, "gravel", **SMALL) == root and sentinel.exists()
    make_demo_dataset(tmp_path, "gravel", **(SMALL | {"n_train": 4}))
    assert not sentinel.exists() and len(list_images(root / "train/good")) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gravel"]  # no temporary folders left

    (root / ".complete").unlink()
    with pytest.raises(InputError, match="not a demo set") as error:
        make_demo_dataset(tmp_path, "gravel", **SMALL)
    assert str(root) in str(error.value)
    make_demo_dataset(tmp_path, "gravel", overwrite=True, **SMALL)
    assert (root / ".complete").exists()


def test_demo_refuses_unknown_category(tmp_path):
    with pytest.raises(InputError, match="brick, gravel, grass"):
        make_demo_dataset(tmp_path, "marble")
    assert DEMO_CATEGORIES == ("brick", "gravel", "grass")


# --- download --------------------------------------------------------------------------------


def make_archive(tmp_path: Path, members: dict[str, bytes]) -> tuple[str, str]:
    """A local .tar.xz holding `members`; returns its file:// URL and SHA-256."""
    archive = tmp_path / "archive.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.as_uri(), hashlib.sha256(archive.read_bytes()).hexdigest()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    solid((1, 2, 3), size=(4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


ARCHIVE = {
    "license.txt": b"CC BY-NC-SA 4.0",
    "bottle/train/good/000.png": png_bytes(),
    "hazelnut/train/good/000.png": png_bytes(),
    "hazelnut/test/good/000.png": png_bytes(),
}


def test_download_extracts_only_the_category(tmp_path):
    url, sha256 = make_archive(tmp_path, ARCHIVE)
    root = tmp_path / "mvtec"
    result = download_mvtec(root, "hazelnut", url=url, sha256=sha256, progress=False)
    assert result == root / "hazelnut"
    assert sorted(p.name for p in root.iterdir()) == ["hazelnut"]  # no bottle, no temporary files
    assert (result / "test/good/000.png").read_bytes() == ARCHIVE["hazelnut/test/good/000.png"]
    # Already there: returns without touching the (now unreachable) URL.
    assert download_mvtec(root, "hazelnut", url=(tmp_path / "gone.tar.xz").as_uri()) == result


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    url, _ = make_archive(tmp_path, ARCHIVE)
    root = tmp_path / "mvtec"
    with pytest.raises(InputError, match="checksum mismatch"):
        download_mvtec(root, "hazelnut", url=url, sha256="0" * 64, progress=False)
    assert list(root.iterdir()) == []


def test_download_refuses_unsafe_archive(tmp_path):
    url, sha256 = make_archive(tmp_path, {"hazelnut/train/good/000.png": png_bytes(), "../evil.txt": b"x"})
    root = tmp_path / "mvtec"
    with pytest.raises(InputError, match="unsafe path"):
        download_mvtec(root, "hazelnut", url=url, sha256=sha256, progress=False)
    assert list(root.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_download_offline_fails_with_advice(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "mvtec"
    expected = r"cannot download MVTec AD \(Name or service not known\): no internet"
    with pytest.raises(InputError, match=expected):
        download_mvtec(root, "hazelnut", progress=False)
    assert list(root.iterdir()) == []


def test_download_refuses_unknown_category(tmp_path):
    with pytest.raises(InputError, match="category"):
        download_mvtec(tmp_path, "walnut")


# --- the real hazelnut toy set ---------------------------------------------------------------


def test_hazelnut_toy_set(hazelnut_root):
    train = MVTecDataset(hazelnut_root, "train", image_size=64)
    test = MVTecDataset(hazelnut_root, "test", image_size=64)
    assert len(train) == 28 and len(test) == 23
    assert test.has_masks and test.labels.sum() == 17 and set(test.defect_types) == {"good", "colour"}
    odd = train.paths.index(hazelnut_root / "train/good/01.jpg")
    assert pixels(train.paths[odd]).shape == (522, 512, 3)  # height 522, width 512
    assert train[odd]["image"].shape == (3, 64, 64)
    anomalous = test[int(np.flatnonzero(test.labels)[0])]
    assert anomalous["mask"].shape == (64, 64) and 0 < anomalous["mask"].sum() < 64 * 64
