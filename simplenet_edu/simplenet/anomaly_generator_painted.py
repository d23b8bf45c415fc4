"""Anomalous feature generator, image level: fakes from painted copies of the training images.

The paper's generator (:mod:`.anomaly_generator`) noises each normal patch feature on its own, so
its fakes lie in a shell around normal features, in directions no real defect takes. This module
makes fakes one level up (``SimpleNetConfig(fakes="painted")``): each training image gets one painted
copy, the copy goes through the frozen backbone, and the feature cells of the painted region become
fakes. It is GLASS's image-level branch (Chen et al., ECCV 2024: textures blended in Perlin masks) on
this project's terms, with the demo set's painters (crack, hole, scratch, stain) for half the images.

A painted image is not a clean lesson, and two rules decide which of its cells teach the discriminator:

- a cell is a **fake** when at least half of it is painted *and* its feature lies farther from the
  normal training patches than the ``quantile`` (0.95) of normal patches' distances to the patches
  of other images: a texture blended into a cookie often lands among normal cookie patches, and
  calling that a defect teaches a wrong boundary (a constraint relative to the normal distribution,
  as GLASS's);
- a cell with no painted pixel is **normal** only if its feature moved less than ``max_move`` (0.5)
  ``r`` from the same cell unpainted (``r = sigma * sqrt(D)``, the Gaussian noise's typical length):
  the backbone's receptive field carries a painting into the cells around it.

Every step of training then adds ``batch_size / 2`` of these cells (half normal, half fake, drawn with
replacement) to the paper's Gaussian fakes, with their own loss term (:func:`~.training.train_step`).
On the development suite (Lite0, three seeds, with the top-10 image score ``image_score="topk"``) this
gave mean AUPRO 0.937 against the Gaussian default's 0.904 at the same mean image AUROC, 0.981, still
below PatchCore's 0.944 / 0.990 (``results/suite_models.md``, ``results/default_sweep.md``). It costs one
more backbone pass over the training images; inference is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from ..data import DEMO_DEFECTS
from ..stages.nearest import nearest_distances
from ..stages.perlin import perlin_noise
from .validation import paint

# Photographs bundled with scikit-image (offline): the textures blended into the training images.
TEXTURES = ("brick", "grass", "gravel", "coffee", "astronaut", "rocket", "immunohistochemistry", "retina",
            "moon", "camera", "coins", "page", "text", "cell", "clock", "chelsea", "hubble_deep_field")
_TEXTURE_CACHE: dict[str, torch.Tensor] = {}


def texture(name: str) -> torch.Tensor:
    """``[3, H, W]`` float in ``[0, 1]``: the scikit-image photograph ``name`` (grey ones as 3 channels)."""
    if name not in _TEXTURE_CACHE:
        pixels = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        pixels = pixels[..., :3] / (255.0 if pixels.max() > 1.5 else 1.0)
        _TEXTURE_CACHE[name] = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)
    return _TEXTURE_CACHE[name]


def texture_crop(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``[3, height, width]`` in ``[0, 1]``: a random square crop (30-100 % of the short side) of a
    random texture, resized, turned (square outputs) or mirrored, with brightness, contrast and
    per-channel gains each in ``[0.8, 1.2]``."""
    source = texture(TEXTURES[int(torch.randint(len(TEXTURES), (1,), generator=generator))])
    _, h, w = source.shape
    side = int(min(h, w) * (0.3 + 0.7 * torch.rand((), generator=generator).item()))
    top = int(torch.randint(0, h - side + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side + 1, (1,), generator=generator))
    crop = F.interpolate(source[None, :, top:top + side, left:left + side], size=(height, width),
                         mode="bilinear", align_corners=False)[0]
    turns = int(torch.randint(4, (1,), generator=generator))
    if height == width:
        crop = torch.rot90(crop, turns, dims=(1, 2))
    if torch.rand((), generator=generator) < 0.5:
        crop = crop.flip(2)
    brightness = 0.8 + 0.4 * torch.rand((), generator=generator)
    contrast = 0.8 + 0.4 * torch.rand((), generator=generator)
    gains = 0.8 + 0.4 * torch.rand((3, 1, 1), generator=generator)
    mean = crop.mean()
    return (((crop - mean) * contrast + mean) * brightness * gains).clamp(0, 1)


def blob_mask(height: int, width: int, generator: torch.Generator, threshold: float = 0.5,
              min_share: float = 0.005, max_share: float = 0.4, tries: int = 50) -> torch.Tensor:
    """``[height, width]`` bool: Perlin noise on a ``2**ky x 2**kx`` lattice (``ky, kx`` in 0..5) above
    ``threshold``, maybe flipped upside down, redrawn until it covers ``min_share``-``max_share`` of
    the image (the last draw after ``tries``)."""
    for _ in range(tries):
        ky, kx = torch.randint(0, 6, (2,), generator=generator).tolist()
        mask = perlin_noise(height, width, (2 ** ky, 2 ** kx), generator) > threshold
        if torch.rand((), generator=generator) < 0.5:
            mask = mask.flip(0)
        if min_share <= mask.float().mean().item() <= max_share:
            break
    return mask


def paint_texture(image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A texture blended into ``image [3, H, W]`` inside a :func:`blob_mask`: ``(painted [3, H, W],
    mask [H, W] bool)``. Inside the mask ``(1 - beta) * texture + beta * image``, the image's share
    ``beta ~ N(0.5, 0.1)`` clipped to ``[0.2, 0.8]``; rounded to 8 bits as an image file would be."""
    _, h, w = image.shape
    mask = blob_mask(h, w, generator)
    patch = texture_crop(h, w, generator)
    beta = float(np.clip(0.5 + 0.1 * torch.randn((), generator=generator).item(), 0.2, 0.8))
    inside = mask.to(image.dtype)
    painted = image * (1 - inside) + inside * ((1 - beta) * patch + beta * image)
    return (painted * 255).round() / 255, mask


def paint_images(images: torch.Tensor, seed: int = 0, painter_share: float = 0.5,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One painted copy of each of ``images [N, 3, H, W]`` in ``[0, 1]``: ``(painted [N, 3, H, W],
    masks [N, H, W] bool)``. Each image gets, with probability ``painter_share``, one of the demo
    set's defects (crack, hole, scratch, stain: :func:`~.validation.paint`), else a blended texture
    (:func:`paint_texture`). The same seed paints the same copies; ``generator`` (instead of
    ``seed``) continues one random stream over several calls."""
    generator = generator or torch.Generator().manual_seed(seed)
    painted, masks = [], []
    for image in images:
        image = image.float()
        if torch.rand((), generator=generator).item() < painter_share:
            rng = np.random.default_rng(int(torch.randint(2 ** 31, (1,), generator=generator)))
            out, mask = paint(image, DEMO_DEFECTS[int(rng.integers(len(DEMO_DEFECTS)))], rng)
            mask = torch.from_numpy(mask)
        else:
            out, mask = paint_texture(image, generator)
        painted.append(out)
        masks.append(mask)
    return torch.stack(painted), torch.stack(masks)


def cell_coverage(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[N, h*w]``: the share of each feature cell's pixels inside ``masks [N, H, W]`` (an ``H x W``
    image on a ``grid = (h, w)``)."""
    return F.adaptive_avg_pool2d(masks[:, None].float(), grid).flatten(1)


def normal_distance_threshold(bank: torch.Tensor, quantile: float, generator: torch.Generator,
                              reference: int = 8192, probes: int = 2048) -> tuple[float, torch.Tensor]:
    """How far a normal patch lies from the normal patches of other images: ``(tau, reference rows)``.

    ``bank [N, P, D]``: the training images' patch features. ``reference`` random patches of it form
    the reference set ``[R, D]``; ``probes`` other random patches each get their distance to the
    nearest reference patch of another image; ``tau`` is the ``quantile`` of these distances.
    """
    n, p, d = bank.shape
    flat = bank.reshape(-1, d)
    image_of = torch.arange(n).repeat_interleave(p)
    ref_rows = torch.randperm(len(flat), generator=generator)[:reference]
    probe_rows = torch.randperm(len(flat), generator=generator)[:probes]
    distances = nearest_distances(flat[probe_rows], flat[ref_rows], image_of[probe_rows], image_of[ref_rows])
    distances = distances[torch.isfinite(distances)]     # a probe whose image holds every reference row
    return torch.quantile(distances, quantile).item(), flat[ref_rows].float()


def select_cells(clean: torch.Tensor, painted: torch.Tensor, coverage: torch.Tensor, reference: torch.Tensor,
                 tau: float, r: float, fake_cover: float = 0.5, max_move: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Which cells of painted images teach the discriminator: ``(fake [N, P] bool, normal [N, P] bool)``.

    ``clean`` and ``painted [N, P, D]``: each image's features before and after painting;
    ``coverage [N, P]`` (:func:`cell_coverage`). A cell is a fake when ``coverage >= fake_cover`` and
    its painted feature lies at least ``tau`` from every row of ``reference [R, D]``
    (:func:`normal_distance_threshold`); it is normal when ``coverage == 0`` and its feature moved
    less than ``max_move * r``.
    """
    moved = (painted.float() - clean.float()).norm(dim=-1)                       # [N, P]
    fake = coverage >= fake_cover
    candidates = fake.nonzero(as_tuple=True)
    fake[candidates] = nearest_distances(painted[candidates], reference) >= tau
    return fake, (coverage == 0) & (moved < max_move * r)


@dataclass
class PaintedCells:
    """The cells of the painted images that training draws from.

    Attributes:
        normals: ``[C, F]`` features of untouched cells that stayed put (label normal).
        fakes: ``[M, F]`` features of painted cells far from the normal patches (label fake).
        tau: the distance a fake lies at least from the normal reference patches.
        kept: the share of well-painted cells (coverage >= 0.5) that passed the distance rule.
    """

    normals: torch.Tensor
    fakes: torch.Tensor
    tau: float
    kept: float

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` cells with replacement: ``(normals [n - n // 2, F], fakes [n // 2, F])``; none of a kind
        when no cell passed its rule (the step then learns from the other kind and the Gaussian fakes)."""
        n_fake = n // 2 if len(self.fakes) else 0
        n_normal = n - n_fake if len(self.normals) else 0
        normals = self.normals[torch.randint(max(1, len(self.normals)), (n_normal,), generator=generator)]
        fakes = self.fakes[torch.randint(max(1, len(self.fakes)), (n_fake,), generator=generator)]
        return normals.float(), fakes.float()


def painted_cells(clean: torch.Tensor, painted: torch.Tensor, masks: torch.Tensor, bank: torch.Tensor,
                  grid: tuple[int, int], r: float, seed: int, quantile: float = 0.95) -> PaintedCells:
    """:class:`PaintedCells` from the features of images before (``clean``) and after painting
    (``painted``), both ``[N, h*w, F]``, their paint ``masks [N, H, W]``, and the training ``bank
    [N_b, P_b, F]`` that sets the normal distances (:func:`select_cells`; seeded by ``seed``)."""
    tau, reference = normal_distance_threshold(bank, quantile, torch.Generator().manual_seed(seed))
    coverage = cell_coverage(masks, grid)
    fake, normal = select_cells(clean, painted, coverage, reference, tau, r)
    painted_enough = int((coverage >= 0.5).sum())
    return PaintedCells(normals=painted[normal], fakes=painted[fake], tau=tau,
                        kept=int(fake.sum()) / painted_enough if painted_enough else 0.0)


@dataclass
class PaintingSet:
    """Painted copies of training images and their features, made once per ``fit``.

    Attributes:
        images: the training image (its index in the training set) of each copy.
        clean: ``[N, P, F]`` each image's patch features as it is.
        painted: ``[N, P, F]`` the same after painting.
        masks: ``[N, H, W]`` bool, the painted pixels.
        grid: ``(h, w)``, the patch grid (``P = h * w``).
    """

    images: list[int]
    clean: torch.Tensor
    painted: torch.Tensor
    masks: torch.Tensor
    grid: tuple[int, int]

    def cells(self, images: Sequence[int], r: float, seed: int, quantile: float = 0.95) -> PaintedCells:
        """:func:`painted_cells` of the copies of ``images`` only (a model trained on some folds never
        learns from a copy of an image it is calibrated on); their clean features set the normal distances."""
        wanted = set(images)
        rows = [i for i, image in enumerate(self.images) if image in wanted]
        clean = self.clean[rows]
        return painted_cells(clean, self.painted[rows], self.masks[rows], clean, self.grid, r, seed, quantile)


def paint_training_set(load: Callable[[list[int]], torch.Tensor], extract: Callable[[torch.Tensor], torch.Tensor],
                       images: Sequence[int], grid: tuple[int, int], seed: int,
                       clean: Callable[[int], torch.Tensor | None] = lambda image: None,
                       batch_size: int = 8, progress: bool = False) -> PaintingSet:
    """One painted copy of each of the training ``images`` through the backbone (:func:`paint_images`, one
    random stream from ``seed``): ``load(indices) -> [B, 3, H, W]``, ``extract(images) -> [B, P, F]``;
    ``clean(image)``: its features ``[P, F]`` if already at hand (the bank), else ``None`` (extracted here)."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    clean_rows, painted_rows, masks = [], [], []
    images = list(images)
    for start in tqdm(range(0, len(images), batch_size), desc="painted fakes", disable=not progress, leave=False):
        chunk = images[start:start + batch_size]
        originals = load(chunk)
        copies, chunk_masks = paint_images(originals, generator=generator)
        painted_rows.append(extract(copies))
        known = [clean(image) for image in chunk]
        missing = [i for i, features in enumerate(known) if features is None]
        if missing:
            extracted = extract(originals[missing])
            for i, features in zip(missing, extracted):
                known[i] = features
        clean_rows.append(torch.stack([features.to(painted_rows[-1].dtype) for features in known]))
        masks.append(chunk_masks)
    return PaintingSet(images, torch.cat(clean_rows), torch.cat(painted_rows), torch.cat(masks), grid)
