"""The embedded default dataset: procedurally generated products with synthetic defects.

Needs no download, builds in about a second, and is what the demo and the tests train on. Three
categories, in the spirit of MVTec AD's textures and objects:

- `grid`   (texture): dark lines on a light background, random phase and tint per image.
- `weave`  (texture): a diagonal two-colour sinusoidal pattern, random phase and period jitter.
- `disc`   (object):  a shaded orange disc with an inner ring, centred on a dark background, with
    small jitter of position, radius and brightness.

Normal images vary only in those nuisances plus mild pixel noise. Defects change local colour and
texture strongly, so that even a weak or randomly initialised teacher produces features the
student has never been trained to reproduce there:
- `scratch`: a 2-4 px line, near white or near black, at a random angle;
- `spot`:    a saturated red/green/magenta ellipse;
- `missing`: a patch where the pattern is gone (texture: flat background colour; object: a bite
    out of the disc showing the background).
Masks are exact: the set of pixels the defect painted (for `missing` on the disc, those that
belonged to the disc). Everything is deterministic from the config's seed.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from rgpkd_jax.data import base
from rgpkd_jax.data.errors import DatasetError

CATEGORIES = ("grid", "weave", "disc")
DEFECT_TYPES = ("scratch", "spot", "missing")


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    size: int = 128
    seed: int = 0
    num_train: int = 60
    num_test_good: int = 20
    num_test_defective: int = 21  # split evenly over DEFECT_TYPES


@dataclasses.dataclass
class _Canvas:
    """An image being drawn, with the region a defect may touch and the plain background colour."""
    pixels: np.ndarray          # (S, S, 3) float in [0, 1]
    allowed: np.ndarray         # (S, S) bool: where defects go (the object, or everywhere)
    background: np.ndarray      # (3,) colour shown where something is missing


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[:size, :size].astype(np.float32)


def _grid(rng: np.random.Generator, size: int) -> _Canvas:
    yy, xx = _coords(size)
    period = size / 8
    phase_y, phase_x = rng.uniform(0, period, 2)
    width = max(2.0, size / 48)
    lines = (((yy + phase_y) % period) < width) | (((xx + phase_x) % period) < width)
    light = np.array([0.78, 0.76, 0.70]) + rng.uniform(-0.03, 0.03, 3)
    dark = np.array([0.25, 0.25, 0.28]) + rng.uniform(-0.03, 0.03, 3)
    pixels = np.where(lines[..., None], dark, light)
    return _Canvas(pixels, np.ones((size, size), bool), light)


def _weave(rng: np.random.Generator, size: int) -> _Canvas:
    yy, xx = _coords(size)
    period = size / 10 * rng.uniform(0.95, 1.05)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (xx + yy) / period + phase) * np.sin(2 * np.pi * (xx - yy) / period)
    first = np.array([0.20, 0.35, 0.65]) + rng.uniform(-0.03, 0.03, 3)
    second = np.array([0.85, 0.78, 0.55]) + rng.uniform(-0.03, 0.03, 3)
    pixels = first + wave[..., None] * (second - first)
    return _Canvas(pixels, np.ones((size, size), bool), first)


def _disc(rng: np.random.Generator, size: int) -> _Canvas:
    yy, xx = _coords(size)
    centre_y, centre_x = size / 2 + rng.uniform(-size / 40, size / 40, 2)
    radius = size * rng.uniform(0.31, 0.34)
    distance = np.hypot(yy - centre_y, xx - centre_x)
    background = np.array([0.10, 0.10, 0.12])
    body = np.array([0.90, 0.55, 0.15]) * rng.uniform(0.95, 1.05)
    shading = 1.0 - 0.35 * (distance / radius) ** 2
    ring = np.abs(distance - 0.55 * radius) < size / 60
    disc = distance < radius
    pixels = np.where(disc[..., None], body * shading[..., None], background)
    pixels = np.where((disc & ring)[..., None], body * 0.45, pixels)
    return _Canvas(pixels, disc, background)


_PRODUCTS: dict[str, Callable[[np.random.Generator, int], _Canvas]] = {
    "grid": _grid, "weave": _weave, "disc": _disc}


def _random_point(rng: np.random.Generator, allowed: np.ndarray, margin: int) -> tuple[int, int]:
    """A pixel of `allowed` at least `margin` px from the border."""
    inner = np.zeros_like(allowed)
    inner[margin:-margin, margin:-margin] = allowed[margin:-margin, margin:-margin]
    ys, xs = np.nonzero(inner)
    pick = rng.integers(len(ys))
    return int(ys[pick]), int(xs[pick])


def _scratch_region(rng, canvas, size):
    yy, xx = _coords(size)
    y0, x0 = _random_point(rng, canvas.allowed, size // 6)
    angle = rng.uniform(0, np.pi)
    half_length = size * rng.uniform(0.12, 0.22)
    half_width = rng.uniform(1.0, 2.0) * size / 64
    dy, dx = np.sin(angle), np.cos(angle)
    along = (yy - y0) * dy + (xx - x0) * dx
    across = -(yy - y0) * dx + (xx - x0) * dy
    region = (np.abs(along) <= half_length) & (np.abs(across) <= half_width) & canvas.allowed
    colour = np.array([0.97, 0.97, 0.97]) if rng.random() < 0.5 else np.array([0.02, 0.02, 0.02])
    return region, colour


def _spot_region(rng, canvas, size):
    yy, xx = _coords(size)
    y0, x0 = _random_point(rng, canvas.allowed, size // 8)
    radius_y, radius_x = size * rng.uniform(0.05, 0.09, 2)
    region = (((yy - y0) / radius_y) ** 2 + ((xx - x0) / radius_x) ** 2 <= 1) & canvas.allowed
    colour = np.array([[0.9, 0.05, 0.05], [0.05, 0.8, 0.1], [0.85, 0.1, 0.85]])[rng.integers(3)]
    return region, colour


def _missing_region(rng, canvas, size):
    yy, xx = _coords(size)
    if canvas.allowed.all():  # texture: a rectangular patch without the pattern
        y0, x0 = _random_point(rng, canvas.allowed, size // 6)
        half_h, half_w = size * rng.uniform(0.06, 0.12, 2)
        region = (np.abs(yy - y0) <= half_h) & (np.abs(xx - x0) <= half_w)
    else:  # object: a round bite centred on the rim
        ys, xs = np.nonzero(canvas.allowed)
        centre_y, centre_x = ys.mean(), xs.mean()
        radius = np.sqrt(canvas.allowed.sum() / np.pi)
        angle = rng.uniform(0, 2 * np.pi)
        y0, x0 = centre_y + radius * np.sin(angle), centre_x + radius * np.cos(angle)
        region = (np.hypot(yy - y0, xx - x0) <= radius * rng.uniform(0.3, 0.45)) & canvas.allowed
    return region, canvas.background


_DEFECTS = {"scratch": _scratch_region, "spot": _spot_region, "missing": _missing_region}


def make_example(category: str, defect_type: str, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 (S, S, 3), mask uint8 (S, S) 0/255) pair; deterministic in its arguments."""
    if category not in _PRODUCTS:
        raise DatasetError(f"Unknown synthetic category {category!r}; choose one of {CATEGORIES}.")
    # Separate streams: the good image of a seed is its defective image minus the defect.
    product_rng, defect_rng, noise_rng = map(np.random.default_rng, np.random.SeedSequence(seed).spawn(3))
    canvas = _PRODUCTS[category](product_rng, size)
    mask = np.zeros((size, size), bool)
    if defect_type != base.GOOD:
        mask, colour = _DEFECTS[defect_type](defect_rng, canvas, size)
        canvas.pixels = np.where(mask[..., None], colour, canvas.pixels)
    noisy = canvas.pixels + noise_rng.normal(0.0, 0.015, canvas.pixels.shape)
    image = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8) * 255


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def list_samples(config: SyntheticConfig) -> dict[str, list[base.Sample]]:
    """The generated train/test splits of one category, as encoded samples."""
    category = config.name
    category_seed = CATEGORIES.index(category)

    def sample(split: str, defect_type: str, number: int) -> base.Sample:
        kind = ((base.GOOD,) + DEFECT_TYPES).index(defect_type)
        split_number = ("train", "test").index(split)
        seed = np.random.SeedSequence([config.seed, category_seed, split_number, kind, number])
        image, mask = make_example(category, defect_type, int(seed.generate_state(1)[0]), config.size)
        return base.Sample(
            image=_png(image), label=int(defect_type != base.GOOD), defect_type=defect_type,
            file_name=f"{category}/{split}/{defect_type}/{number:03d}.png",
            mask=None if defect_type == base.GOOD else _png(mask))

    test = [sample("test", base.GOOD, i) for i in range(config.num_test_good)]
    for i in range(config.num_test_defective):
        test.append(sample("test", DEFECT_TYPES[i % len(DEFECT_TYPES)], i // len(DEFECT_TYPES)))
    return {
        "train": [sample("train", base.GOOD, i) for i in range(config.num_train)],
        "test": sorted(test, key=lambda s: s.file_name),
    }


class Synthetic(base.AnomalyBuilder):
    """Procedural textures and objects with exact defect masks (no download)."""

    name = "synthetic"
    BUILDER_CONFIGS = [SyntheticConfig(name=category, description=f"synthetic {category}")
                       for category in CATEGORIES]
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Nothing to download: the data is generated."

    def source_root(self, dl_manager) -> str:
        return ""

    def list_samples(self, root, category):
        return list_samples(self.builder_config)
