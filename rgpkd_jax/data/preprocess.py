"""Host-side preprocessing, exactly as the official RD4AD / SK-RD4AD code (REFERENCE_SPEC §1).

Images: PIL -> RGB (grayscale gets three equal channels) -> PIL bilinear resize to the configured
size (PIL low-pass filters when downscaling, as torchvision's Resize does on PIL images) -> float32
in [0, 1] -> ImageNet normalisation. The resize happens on the uint8 image, like
`torchvision.transforms.Resize` followed by `ToTensor`, so the result equals torchvision's bit for bit.

Masks: PIL -> 8-bit grey -> PIL bilinear resize on uint8 -> [0, 1] -> `> 0.5`. The official loader
uses bilinear (not nearest) interpolation and thresholds in evaluation; we threshold here so every
mask in a batch is exactly 0/1.

0/1 masks: some datasets (VisA) store masks with values 0/1 instead of 0/255. Fed to the official
code such a mask becomes 1/255 after `ToTensor` and disappears at the 0.5 threshold (REFERENCE_SPEC
§3.3). We treat any mask whose maximum is exactly 1 as a 0/1 mask and scale it to 0/255 first.
A mask whose maximum is 1 cannot mean "barely visible anomaly" in any dataset we know.
"""

from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
from PIL import Image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

Size = Union[int, tuple[int, int]]
ImageSource = Union[bytes, str, os.PathLike, Image.Image]


def _hw(size: Size) -> tuple[int, int]:
    """(height, width) from an int (square) or a pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def open_image(source: ImageSource) -> Image.Image:
    """Opens encoded bytes, a path or a PIL image, fully decoded (corrupt files fail here)."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, bytes):
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(os.fspath(source))
    image.load()
    return image


def to_rgb(source: ImageSource) -> Image.Image:
    """The official loader's `Image.open(path).convert('RGB')`."""
    image = open_image(source)
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess_image(source: ImageSource, size: Size) -> np.ndarray:
    """Encoded/PIL image -> (H, W, 3) float32, ImageNet-normalised."""
    height, width = _hw(size)
    image = to_rgb(source)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def denormalize(images: np.ndarray) -> np.ndarray:
    """Inverse of the normalisation: NHWC or HWC float in [0, 1] (for reconstructions, plots).
    Numpy in, numpy out; a jax array (also inside jit, as the evaluator's map) gives a jax array."""
    return (images * IMAGENET_STD + IMAGENET_MEAN).clip(0.0, 1.0)


def mask_to_uint8(source: ImageSource) -> np.ndarray:
    """Any mask image -> (H, W) uint8 where 255 is foreground; 0/1 masks are scaled to 0/255."""
    image = open_image(source)
    grey = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)
    if grey.size and grey.max() == 1:
        grey = grey * np.uint8(255)
    return grey


def preprocess_mask(source: ImageSource, size: Size) -> np.ndarray:
    """Mask -> (H, W) float32 in {0, 1}: bilinear resize of the 0..255 mask, then > 0.5."""
    height, width = _hw(size)
    grey = Image.fromarray(mask_to_uint8(source))
    if grey.size != (width, height):
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    unit = np.asarray(grey, dtype=np.float32) / np.float32(255.0)
    return (unit > 0.5).astype(np.float32)
