"""Reading one image file: any PIL mode to 8-bit RGB, resized (and centre-cropped) to the model's input.

Images come out as float32 tensors in [0, 1], NOT normalised: each backbone applies the mean and
standard deviation it was trained with. Masks come out as float32 0/1, resized by nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simplenet_edu.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")



def _read(path: Path) -> Image.Image:
    """Open and fully decode an image file, so that a broken or truncated file fails here."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
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


def _check_sizes(image_size: int, crop_size: int | None) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise InputError("image_size", f"must be a positive integer, got {image_size!r}")
    if crop_size is not None and (not isinstance(crop_size, int) or not 1 <= crop_size <= image_size):
        problem = f"must be an integer from 1 to image_size ({image_size}), got {crop_size!r}"
        raise InputError("crop_size", problem)


def _resize_crop(image: Image.Image, image_size: int, crop_size: int | None, resample: int) -> Image.Image:
    """Resize to image_size x image_size, then cut the central crop_size x crop_size square."""
    image = image.resize((image_size, image_size), resample)
    if crop_size is None:
        return image
    left = (image_size - crop_size) // 2  # 329 -> 288 drops 20 pixels on the left/top, 21 on the right/bottom
    return image.crop((left, left, left + crop_size, left + crop_size))


def _image_tensor(image: Image.Image, image_size: int, crop_size: int | None) -> torch.Tensor:
    """[3, S, S] float32 in [0, 1]."""
    # Pillow's bilinear filter widens with the scale factor, so shrinking is antialiased.
    rgb = _resize_crop(_to_rgb(image), image_size, crop_size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def _mask_tensor(mask: Image.Image, image_size: int, crop_size: int | None) -> torch.Tensor:
    """[S, S] float32 of 0 and 1."""
    # Nearest neighbour keeps a mask binary and keeps its thin edges (bilinear smears them away).
    gray = _resize_crop(_to_rgb(mask).convert("L"), image_size, crop_size, Image.Resampling.NEAREST)
    return torch.from_numpy((np.asarray(gray) > 127).astype(np.float32))


def load_image(path: str | Path, image_size: int, crop_size: int | None = None) -> torch.Tensor:
    """Read one image file as a [3, S, S] float32 tensor in [0, 1], S = crop_size or image_size."""
    _check_sizes(image_size, crop_size)
    return _image_tensor(_read(Path(path)), image_size, crop_size)
