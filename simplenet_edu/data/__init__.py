"""Images in, tensors out: the MVTec AD folder layout, the up-front check, a demo data set, the download.

SimpleNet learns from normal images only, so a data set is a folder of normal training images and a
test folder in which some images carry defects. This package reads the MVTec AD layout::

    <root>/train/good/*.png                   normal images for training
    <root>/test/good/*.png                    normal images for testing
    <root>/test/<defect>/*.png                anomalous images, one folder per defect type
    <root>/ground_truth/<defect>/<stem>_mask.png   pixel masks of the anomalous images (optional)

Images come out as float32 tensors in [0, 1], NOT normalised: each backbone applies the mean and
standard deviation it was trained with. Any PIL image mode is turned into 8-bit RGB first.

One concern per module, all importable from here (``from simplenet_edu.data import MVTecDataset``):

- ``images``: reading one image file and resizing it to the model's input;
- ``folders``: the layout, the train and test splits as data sets, the hold-out split;
- ``checks``: :func:`check_dataset`, one pass over a whole folder before any model work, that
  reports every problem it finds;
- ``demo``: :func:`make_demo_dataset` paints a set offline, in a second, from scikit-image's
  texture photographs;
- ``download``: :func:`download_mvtec` fetches the real MVTec AD archive (needs internet, about 5 GB).
"""

from .checks import DatasetCheck, check_dataset
from .demo import (
    _PAINTERS,
    DEMO_CATEGORIES,
    DEMO_DEFECTS,
    _normal_crop,
    _paint_defect,
    _texture,
    make_demo_dataset,
)
from .download import MVTEC_CATEGORIES, MVTEC_PAGE, MVTEC_SHA256, MVTEC_URL, download_mvtec
from .folders import (
    ImageFolderDataset,
    MVTecDataset,
    check_mvtec_folder,
    iter_images,
    list_images,
    require_images,
    split_holdout,
    stack,
)
from .images import (
    AUTO_ASPECT,
    IMAGE_EXTENSIONS,
    Size,
    _image_tensor,
    _mask_tensor,
    _read,
    _to_rgb,
    as_shape,
    aspect_shapes,
    input_shapes,
    keeps_aspect,
    load_image,
)

__all__ = [
    "AUTO_ASPECT", "DEMO_CATEGORIES", "DEMO_DEFECTS", "IMAGE_EXTENSIONS", "MVTEC_CATEGORIES", "MVTEC_PAGE", "MVTEC_SHA256",
    "MVTEC_URL", "DatasetCheck", "ImageFolderDataset", "MVTecDataset", "Size", "as_shape", "aspect_shapes",
    "check_dataset", "check_mvtec_folder", "download_mvtec", "input_shapes", "iter_images", "keeps_aspect", "list_images",
    "load_image", "make_demo_dataset", "require_images", "split_holdout", "stack",
]  # fmt: skip
