"""Images in, heat maps out, with numpy and Pillow alone: the one implementation that training,
evaluation, ``--mode predict`` and the deployed predictor all use.

Preprocessing is the official RD4AD / SK-RD4AD code's (docs/reference.md §1): PIL -> RGB (grayscale
gets three equal channels) -> PIL bilinear resize on the uint8 image to the configured size (PIL
low-pass filters when downscaling, as torchvision's Resize does on PIL images) -> float32 in
[0, 1] -> ImageNet normalisation; the result equals torchvision's bit for bit.

Heat maps are a jet colour map blended half and half over the image; the jet table is
matplotlib's (same segment data, 256 entries, same lookup), so figures need no matplotlib here.

16-bit images (docs/reference.md §1 reads 8-bit files only; `convert('RGB')` would clip a 16-bit
grey image to white): 16-bit grey (PIL modes I;16*, or I from a PNG) is read at full depth, scaled
to [0, 1] by 65535 and resized as float (PIL mode F, the same bilinear filter), then given three
equal channels. Pillow decodes 16-bit colour (RGB/RGBA/LA) by keeping each sample's high byte, an
8-bit image within 1/255 of the true one; that is used, with a warning naming the file. 32-bit
integer or float images (modes I, F) have no known range and are refused.

`heatmap_with_colour_bar` draws one image's map at the image's original size with its own colour
bar and the decision threshold on it (what predict writes).
"""

from __future__ import annotations

import io
import logging
import os
from typing import Union

import numpy as np
from PIL import Image, ImageDraw

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INTERPOLATION = "bilinear"  # PIL's, on the uint8 RGB image
# What datasets and predict read, in any case; files with other suffixes are skipped with a warning.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SIXTEEN_BIT_MAX = 65535  # 16-bit samples are scaled to [0, 1] by the largest value of the type
SIXTEEN_BIT_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# `Image.info` key set on 16-bit colour images Pillow decoded at 8 bits (their file is not 8-bit).
READ_FROM_16_BITS = "rgpkd_jax.read_from_16_bits"

Size = Union[int, tuple[int, int]]
ImageSource = Union[bytes, str, os.PathLike, Image.Image]

_log = logging.getLogger(__name__)


def size_hw(size: Size) -> tuple[int, int]:
    """(height, width) from an int (square) or a pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class UnsupportedImageError(ValueError):
    """An image whose pixel values cannot be read faithfully; the message names the file."""


def source_name(source: ImageSource) -> str:
    """The path of a file source, for messages."""
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<in-memory image>"


def is_sixteen_bit_grey(image: Image.Image) -> bool:
    """A 16-bit grey image (Pillow opens 16-bit grey PNGs as I;16, older versions as I)."""
    return image.mode in SIXTEEN_BIT_GREY_MODES or (image.mode == "I" and image.format == "PNG")


def open_image(source: ImageSource, name: str | None = None) -> Image.Image:
    """Opens encoded bytes, a path or a PIL image, fully decoded (corrupt files fail here).

    Raises UnsupportedImageError for 32-bit images; warns when Pillow reduces a 16-bit colour
    file to 8 bits per channel (see the module docstring). `name` names the file in both.
    """
    name = name or source_name(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source))
        # The decoder's raw mode tells the file's depth; after load() only the 8-bit result is left.
        if image.mode in ("RGB", "RGBA", "LA") and any(";16" in str(tile.args) for tile in image.tile):
            image.info[READ_FROM_16_BITS] = True
            _log.warning("%s: 16-bit %s image read at 8 bits per channel (Pillow keeps the high byte "
                         "of each sample)", name, image.mode)
        image.load()
    if image.mode in ("I", "F") and not is_sixteen_bit_grey(image):
        raise UnsupportedImageError(
            f"{name}: 32-bit {'float' if image.mode == 'F' else 'integer'} image (PIL mode "
            f"{image.mode}) has no known value range; save it as an 8-bit or 16-bit PNG.")
    return image


def _sixteen_bit_unit(image: Image.Image) -> np.ndarray:
    """A 16-bit grey image as float32 in [0, 1], scaled by 65535."""
    return np.asarray(image, dtype=np.float32) / np.float32(SIXTEEN_BIT_MAX)


def to_rgb(source: ImageSource) -> Image.Image:
    """The official loader's `Image.open(path).convert('RGB')`; 16-bit grey is scaled to 8 bits
    (rounded) instead of clipped."""
    image = open_image(source)
    if is_sixteen_bit_grey(image):
        grey = np.round(_sixteen_bit_unit(image) * 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess_image(source: ImageSource, size: Size) -> np.ndarray:
    """Encoded/PIL image -> (H, W, 3) float32, ImageNet-normalised (16-bit grey at full depth)."""
    height, width = size_hw(size)
    image = open_image(source)
    if is_sixteen_bit_grey(image):
        grey = Image.fromarray(_sixteen_bit_unit(image))  # mode F
        if grey.size != (width, height):
            grey = grey.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=-1)
    else:
        image = to_rgb(image)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def denormalize(images: np.ndarray) -> np.ndarray:
    """Inverse of the normalisation: NHWC or HWC float in [0, 1] (for reconstructions, plots).
    Numpy in, numpy out; a jax array (also inside jit, as the evaluator's map) gives a jax array."""
    return (images * IMAGENET_STD + IMAGENET_MEAN).clip(0.0, 1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Normalised NHWC images back to uint8 RGB (for figures and heat-map overlays)."""
    return (np.clip(np.asarray(denormalize(images)), 0, 1) * 255).round().astype(np.uint8)


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_SUFFIXES` (any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def describe_skipped(names: list[str]) -> str:
    """Files skipped for their suffix, in a few words: how many, the accepted suffixes, ten names."""
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return (f"{len(names)} file(s) whose suffix is not an image's ({' '.join(IMAGE_SUFFIXES)}): "
            f"{', '.join(names[:10])}{more}")


def list_images(path: str) -> tuple[list[str], list[str]]:
    """(images, skipped): ``path`` itself if it is a file, else the image files under it
    (recursively, sorted), and the other files under it (hidden ones aside), relative to it."""
    if os.path.isfile(path):
        return [path], []
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--input {path!r} is neither an image file nor a folder")
    every = sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names
                   if not name.startswith("."))
    found = [p for p in every if is_image_name(p)]
    if not found:
        raise FileNotFoundError(f"no images ({' '.join(IMAGE_SUFFIXES)}) found under {path!r}")
    return found, [os.path.relpath(p, path) for p in every if not is_image_name(p)]


def load_images(paths: list[str], size: Size) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Preprocesses each file; returns the readable ones, their batch, and {file: error} for the rest."""
    good, images, errors = [], [], {}
    for path in paths:
        try:
            images.append(preprocess_image(path, size))
            good.append(path)
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported and skipped
            errors[path] = f"{type(e).__name__}: {e}"
            _log.warning("skipping %s: %s", path, errors[path])
    stacked = np.stack(images) if images else np.zeros((0, *size_hw(size), 3), np.float32)
    return good, stacked, errors


# matplotlib's `_jet_data`: per channel, (x, value left of x, value right of x).
_JET_SEGMENTS = (
    ((0.00, 0, 0), (0.35, 0, 0), (0.66, 1, 1), (0.89, 1, 1), (1.00, 0.5, 0.5)),
    ((0.000, 0, 0), (0.125, 0, 0), (0.375, 1, 1), (0.640, 1, 1), (0.910, 0, 0), (1.000, 0, 0)),
    ((0.00, 0.5, 0.5), (0.11, 1, 1), (0.34, 1, 1), (0.65, 0, 0), (1.00, 0, 0)),
)
_JET_ENTRIES = 256


def _segment_table(segments, entries: int) -> np.ndarray:
    """matplotlib's `_create_lookup_table` (gamma 1) for one channel."""
    x, left, right = (np.array(column, dtype=float) for column in zip(*segments))
    x = x * (entries - 1)
    positions = (entries - 1) * np.linspace(0, 1, entries)
    index = np.searchsorted(x, positions)[1:-1]
    distance = (positions[1:-1] - x[index - 1]) / (x[index] - x[index - 1])
    inner = distance * (left[index] - right[index - 1]) + right[index - 1]
    return np.clip(np.concatenate([[right[0]], inner, [left[-1]]]), 0.0, 1.0)


JET = np.stack([_segment_table(s, _JET_ENTRIES) for s in _JET_SEGMENTS], axis=-1)  # (256, 3)


def jet(values: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of values in [0, 1], as ``matplotlib.colormaps['jet'](values)[..., :3]``
    (the scaling happens in the values' own dtype, as matplotlib's; NaN is black)."""
    scaled = np.array(values, copy=True)
    scaled *= _JET_ENTRIES
    scaled[scaled == _JET_ENTRIES] = _JET_ENTRIES - 1
    bad = np.isnan(scaled)
    index = np.clip(np.where(bad, 0, scaled), 0, _JET_ENTRIES - 1).astype(int)
    return np.where(bad[..., None], 0.0, JET[index])


def overlay(image: np.ndarray, heat: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """A jet-coloured heat map blended over a uint8 RGB image (0.5 / 0.5)."""
    norm = np.clip((heat - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    return (0.5 * image / 255.0 + 0.5 * jet(norm)).clip(0, 1)


BAR_GAP, BAR_WIDTH, LABEL_WIDTH = 4, 14, 70  # pixels right of the image: gap, colour strip, labels
BAR_EXTRA_WIDTH = BAR_GAP + BAR_WIDTH + LABEL_WIDTH


def heatmap_scale(heat: np.ndarray, threshold: float) -> tuple[float, float]:
    """One map's colour range: its own minimum and maximum, widened to include the threshold, so
    that the threshold is always on the colour bar and a map below it never reaches red; other
    images (an outlier among them) do not enter."""
    return min(float(np.min(heat)), threshold), max(float(np.max(heat)), threshold)


def heatmap_with_colour_bar(image: Image.Image, heat: np.ndarray,
                            threshold: float) -> tuple[np.ndarray, dict]:
    """``heat`` (the map at model resolution) resized bilinearly to ``image``'s own size and
    blended over it, with a colour bar on the right that marks ``threshold`` by a black line.

    Returns the (H, W + BAR_EXTRA_WIDTH, 3) uint8 picture and what was drawn: ``vmin``, ``vmax``,
    ``threshold``, ``threshold_row`` (the line's row in the bar; row 0 is ``vmax``) and ``labels``
    (text, top row), which never overlap.
    """
    width, height = image.size
    vmin, vmax = heatmap_scale(heat, threshold)
    resized = np.asarray(Image.fromarray(np.asarray(heat, np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR))
    blended = overlay(np.asarray(to_rgb(image)), resized, vmin, vmax)
    canvas = Image.new("RGB", (width + BAR_EXTRA_WIDTH, height), "white")
    canvas.paste(Image.fromarray(_rgb01_to_uint8(blended)), (0, 0))
    bar = jet(np.linspace(1.0, 0.0, height))[:, None, :].repeat(BAR_WIDTH, axis=1)  # top = vmax
    left = width + BAR_GAP
    canvas.paste(Image.fromarray(_rgb01_to_uint8(bar)), (left, 0))
    span = vmax - vmin
    threshold_row = int(round((vmax - threshold) / span * (height - 1))) if span > 0 else 0
    draw = ImageDraw.Draw(canvas)
    draw.line([(left - 2, threshold_row), (left + BAR_WIDTH + 1, threshold_row)], fill="black", width=1)
    labels = _bar_labels(draw, height, vmin, vmax, threshold, threshold_row)
    for text, top in labels:
        draw.text((left + BAR_WIDTH + 3, top), text, fill="black")
    info = {"vmin": vmin, "vmax": vmax, "threshold": float(threshold), "threshold_row": threshold_row,
            "labels": labels}
    return np.asarray(canvas), info


def _bar_labels(draw: ImageDraw.ImageDraw, height: int, vmin: float, vmax: float, threshold: float,
                threshold_row: int) -> list[tuple[str, int]]:
    """(text, top row) of the colour bar's labels: the threshold beside its line, the maximum at the
    top and the minimum at the bottom unless the threshold's label would overlap them (then the
    threshold, often equal to that end, is the one shown)."""
    text_height = draw.textbbox((0, 0), "0.9g")[3] + 1
    bottom = max(height - text_height, 0)
    threshold_top = min(max(threshold_row - text_height // 2, 0), bottom)
    labels = [(f"thr {threshold:.3g}", threshold_top)]
    for text, top in ((f"{vmax:.3g}", 0), (f"{vmin:.3g}", bottom)):
        if all(abs(top - other) >= text_height for _, other in labels):
            labels.append((text, top))
    return sorted(labels, key=lambda label: label[1])


def _rgb01_to_uint8(rgb01: np.ndarray) -> np.ndarray:
    return (np.clip(rgb01, 0, 1) * 255).round().astype(np.uint8)
