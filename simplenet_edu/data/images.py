"""Reading one image file: any PIL mode to 8-bit RGB, resized (and centre-cropped) to the model's input.

Images come out as float32 tensors in [0, 1], NOT normalised: each backbone applies the mean and
standard deviation it was trained with. Masks come out as float32 0/1, resized by nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..utils.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")



# simplenet_edu/deploy/runtime.py holds a torch-free copy of this reader (_read, _to_rgb, resize and
# crop) for machines without torch; tests/test_deploy.py checks that both give the same pixels.
def _read(path: Path) -> Image.Image:
    """Open and fully decode an image file, so that a broken or truncated file fails here."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except UnidentifiedImageError:
        # Pillow's own message repeats the path; say what it means instead.
        empty = path.is_file() and path.stat().st_size == 0
        problem = "empty file (0 bytes)" if empty else "not an image format Pillow can read, or a broken header"
        raise InputError(path, f"cannot read image: {problem}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(path, f"cannot read image ({error})") from error
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB. 16-bit images are scaled to 8 bits, not clipped."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # Pillow opens 16-bit PNG and TIFF files as I;16 or I, and its own conversion clips at 255.
        # 65535 / 255 = 257, so dividing by 257 (rounded) maps 65535 to 255 and 32896 to 128.
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        image = Image.fromarray(((values + 128) // 257).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns when transparency is dropped from a palette
    return image.convert("RGB")


# An image size is an int (a square, as the paper) or a (height, width) pair.
Size = int | tuple[int, int]


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def as_shape(size: Size) -> tuple[int, int]:
    """``256 -> (256, 256)``; ``(h, w)`` (or a list) -> ``(h, w)``."""
    if _positive_int(size):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_positive_int(s) for s in size):
        return int(size[0]), int(size[1])
    raise InputError("image_size", f"must be a positive integer or a (height, width) pair, got {size!r}")


def input_shapes(image_size: Size, crop_size: Size | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two shapes an image goes through: ``(resize_hw, crop_hw)``, both ``(height, width)``.

    Images are resized to ``image_size``, then their centre is cut to ``crop_size`` (no crop: the
    same shape twice). An int crop of a non-square size keeps the crop's share on both sides: the
    short side becomes ``crop_size`` and the long side shrinks by the same factor (rounded), so
    ``(329, 411)`` cropped by 288 gives ``(288, 360)``, as ``329 -> 288`` would on a square.
    """
    resize = as_shape(image_size)
    if crop_size is None:
        return resize, resize
    if _positive_int(crop_size) and resize[0] != resize[1]:
        short = min(resize)
        crop = tuple(round(side * crop_size / short) for side in resize)
    else:
        try:
            crop = as_shape(crop_size)
        except InputError:
            crop = (0, 0)
    if not (1 <= crop[0] <= resize[0] and 1 <= crop[1] <= resize[1]):
        problem = f"must be a positive integer (or pair) no larger than image_size ({image_size}), got {crop_size!r}"
        raise InputError("crop_size", problem)
    return resize, crop


# keep_aspect="auto" keeps the aspect ratio from a long side of 1.5 x the short one. On strips cut from
# metal_plate (results/elongated_strips.md, seed 0) keeping it gained AUPRO +0.03 to +0.06 from a ratio
# of 2 up and nothing at 1.5 (-0.003), for 1.5x the pixels; on cookie (1.33) it gained nothing
# (results/default_sweep.md). At 1.5 the switch costs 1.5x the pixels for a gain within the seeds'
# spread; from 2 up keeping the aspect clearly pays.
AUTO_ASPECT = 1.5


def keeps_aspect(setting: bool | str, aspect: float, image_size: Size) -> bool:
    """Whether a model keeps its training images' aspect ratio (``aspect``: median height / width).

    ``setting`` ``True`` / ``False`` (a configuration's ``keep_aspect``) decides alone; ``"auto"`` keeps it
    when the long side is at least :data:`AUTO_ASPECT` x the short one and ``image_size`` is one number
    (a (height, width) pair already fixes the shape). Cookie's 576 x 768: 1.33, not kept; a 512 x 256 strip: kept.
    """
    if setting == "auto":
        return isinstance(image_size, int) and max(aspect, 1 / aspect) >= AUTO_ASPECT
    return bool(setting)


def aspect_shapes(image_size: int, crop_size: int | None, aspect: float,
                  multiple: int = 16) -> tuple[tuple[int, int], tuple[int, int]]:
    """:func:`input_shapes` that keep an aspect ratio (``aspect`` = height / width of the images).

    The model's input (after the crop) gets ``crop_size or image_size`` as its short side; its long
    side is the short side plus the multiple of ``multiple`` (the backbone's largest stride) nearest
    to the extra length the aspect ratio asks for, so every layer's grid covers it whole when the
    short side is a multiple too. With a crop, the resize keeps the crop's share on both sides.
    Portrait cookies of 576 x 768 (width x height, aspect 4/3) at 256 give ``(336, 256)``:
    256 * 4/3 = 341.3, 256 + round(85.3 / 16) * 16 = 336.
    """
    if not _positive_int(image_size):
        raise InputError("image_size", f"must be one positive integer (the short side) to keep the aspect "
                                       f"ratio, got {image_size!r}")
    if not (aspect > 0 and np.isfinite(aspect)):
        raise InputError("aspect", f"must be a positive number, got {aspect!r}")
    _, (short, _) = input_shapes(image_size, crop_size)
    ratio = max(aspect, 1 / aspect)
    long = short + multiple * round((short * ratio - short) / multiple)
    model_hw = (long, short) if aspect >= 1 else (short, long)
    if crop_size is None:
        return model_hw, model_hw
    resize = tuple(round(side * image_size / crop_size) for side in model_hw)
    return resize, model_hw


def _check_sizes(image_size: Size, crop_size: Size | None) -> None:
    input_shapes(image_size, crop_size)


def _resize_crop(image: Image.Image, image_size: Size, crop_size: Size | None, resample: int) -> Image.Image:
    """Resize to ``image_size`` (``(height, width)``, or a square side), then cut the central ``crop_size``."""
    (height, width), (crop_h, crop_w) = input_shapes(image_size, crop_size)
    image = image.resize((width, height), resample)  # PIL sizes are (width, height)
    if (crop_h, crop_w) == (height, width):
        return image
    # 329 -> 288 drops 20 pixels on the left/top, 21 on the right/bottom.
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


def _image_tensor(image: Image.Image, image_size: Size, crop_size: Size | None) -> torch.Tensor:
    """[3, H, W] float32 in [0, 1]."""
    # Pillow's bilinear filter widens with the scale factor, so shrinking is antialiased.
    rgb = _resize_crop(_to_rgb(image), image_size, crop_size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def _mask_tensor(mask: Image.Image, image_size: Size, crop_size: Size | None) -> torch.Tensor:
    """[H, W] float32 of 0 and 1."""
    # Nearest neighbour keeps a mask binary and keeps its thin edges (bilinear smears them away).
    gray = _resize_crop(_to_rgb(mask).convert("L"), image_size, crop_size, Image.Resampling.NEAREST)
    return torch.from_numpy((np.asarray(gray) > 127).astype(np.float32))


def load_image(path: str | Path, image_size: Size, crop_size: Size | None = None) -> torch.Tensor:
    """Read one image file as a ``[3, H, W]`` float32 tensor in [0, 1]: resized to ``image_size`` (an int
    for a square, or ``(height, width)``), then centre-cropped to ``crop_size`` (see :func:`input_shapes`)."""
    _check_sizes(image_size, crop_size)
    return _image_tensor(_read(Path(path)), image_size, crop_size)
