"""Host-side preprocessing, exactly as the official RD4AD / SK-RD4AD code (docs/reference.md §1).

Images: PIL -> RGB (grayscale gets three equal channels) -> PIL bilinear resize to the configured
size (PIL low-pass filters when downscaling, as torchvision's Resize does on PIL images) -> float32
in [0, 1] -> ImageNet normalisation. The resize happens on the uint8 image, like
`torchvision.transforms.Resize` followed by `ToTensor`, so the result equals torchvision's bit for bit.

Masks: PIL -> 8-bit grey -> PIL bilinear resize on uint8 -> [0, 1] -> `> threshold`
(`config.eval.mask_threshold`, default the official 0.5). The official loader uses bilinear (not
nearest) interpolation and thresholds in evaluation; we threshold here so every mask in a batch is
exactly 0/1. The threshold is part of the evaluation protocol (docs/protocol.md): `> 0` keeps
every pixel the resize touched and moves the pixel metrics.

0/1 masks: some datasets (VisA) store masks with values 0/1 instead of 0/255. Fed to the official
code such a mask becomes 1/255 after `ToTensor` and disappears at the 0.5 threshold (docs/reference.md
§3.3). We treat any mask whose maximum is exactly 1 as a 0/1 mask and scale it to 0/255 first.
A mask whose maximum is 1 cannot mean "barely visible anomaly" in any dataset we know.

16-bit masks are scaled to 0..255 by 65535, as 16-bit images (`rgpkd_jax.deploy.images`), after
the same 0/1 rule; one that is not empty but would vanish at the 0.5 threshold after scaling (an
8-bit mask saved with 16 bits, say) is refused with its file name rather than read as empty.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# The image path is shared with the deployed predictor, which must not import JAX: it lives in
# rgpkd_jax.deploy.images (numpy and Pillow only) and is re-exported here.
from rgpkd_jax.deploy.images import (  # noqa: F401 - re-exported
    IMAGENET_MEAN, IMAGENET_STD, READ_FROM_16_BITS, SIXTEEN_BIT_MAX, ImageSource, Size, UnsupportedImageError,
    denormalize, is_sixteen_bit_grey, open_image, preprocess_image, size_hw, source_name, to_rgb)


def mask_to_uint8(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Any mask image -> (H, W) uint8 where 255 is foreground; 0/1 masks are scaled to 0/255,
    16-bit masks by 255 / 65535. `name` names the file in errors."""
    name = name or source_name(source)
    image = open_image(source, name)
    if is_sixteen_bit_grey(image):
        values = np.asarray(image, dtype=np.int64)
        if values.size and values.max() == 1:
            return (values * 255).astype(np.uint8)
        grey = np.round(values * (255 / SIXTEEN_BIT_MAX)).astype(np.uint8)
        if values.any() and grey.max() <= 127:
            raise UnsupportedImageError(
                f"{name}: 16-bit mask whose largest value is {values.max()} of 65535 "
                "vanishes at the 0.5 threshold; save it as 0/255 8-bit or 0/65535 16-bit PNG.")
        return grey
    grey = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)
    if grey.size and grey.max() == 1:
        grey = grey * np.uint8(255)
    return grey


OFFICIAL_MASK_THRESHOLD = 0.5


def check_mask_threshold(threshold) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"config.eval.mask_threshold must be a number in [0, 1) (a resized mask pixel "
                         f"is defective when above it; official 0.5), got {threshold!r}")


def preprocess_mask(source: ImageSource, size: Size, threshold: float = OFFICIAL_MASK_THRESHOLD) -> np.ndarray:
    """Mask -> (H, W) float32 in {0, 1}: bilinear resize of the 0..255 mask, then > ``threshold``."""
    height, width = size_hw(size)
    grey = Image.fromarray(mask_to_uint8(source))
    if grey.size != (width, height):
        grey = grey.resize((width, height), Image.Resampling.BILINEAR)
    unit = np.asarray(grey, dtype=np.float32) / np.float32(255.0)
    return (unit > threshold).astype(np.float32)
