"""What every dataset builder shares: the features, the validation and encoding of one example.

TensorFlow is not installed, so the builders rely only on the parts of TFDS that work without it:
`GeneratorBasedBuilder.download_and_prepare(file_format='array_record')` writes the records and
`tfds.data_source` / `builder.as_data_source()` reads them back with random access.

Images are stored as encoded bytes inside `tfds.features.Image` features:
- `image`: the file's own bytes when it is an 8-bit RGB PNG or JPEG (lossless, small); a 16-bit grey
    image as a 16-bit grey PNG (its own bytes if it is one), which preprocessing reads at full depth
    (`rgpkd_jax.deploy.images`); anything else (8-bit grayscale, palette, RGBA, 16-bit colour,
    BMP, TIFF) is converted with PIL's `convert('RGB')` -- the official loader's first step -- and
    stored as PNG.
- `mask`: one channel, 0..255 PNG, all zero for good images; 0/1 masks are scaled to 0/255 when
    prepared (see `preprocess.mask_to_uint8`).
The pipeline reads them with `tfds.decode.SkipDecoding()` and decodes with PIL itself, so decoding
is identical to the official code whether or not OpenCV (which TFDS prefers) is installed, and a
JPEG never goes through a second decoder.

The dataset's metadata (`metadata.json`) records `source_fingerprint`: the image and mask files
it was built from (`source.fingerprint`), so a later use can tell that the source folder changed.
Defective images whose mask is empty (no defect pixel) are prepared but named in a warning.

Records keep the order in which a builder lists them (`disable_shuffling=True`), sorted by file
name, so `index` is stable and test batches come out in a documented order.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from rgpkd_jax.data import preprocess, source
from rgpkd_jax.data.errors import DatasetError

LABEL_NAMES = ("good", "defective")
GOOD = "good"
SOURCE_FINGERPRINT = "source_fingerprint"  # the dataset metadata's key of `source.fingerprint`
HAS_MASKS_KEY = "has_masks"  # the dataset metadata's key of `AnomalyBuilder.has_masks` at prepare time

# Images with an aspect ratio this close to their mask's are treated as the same picture at a
# different resolution (the mask is resized); anything else is an error.
_ASPECT_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class Sample:
    """One example before encoding. `image`/`mask` are a path or already encoded bytes."""
    image: Union[str, os.PathLike, bytes]
    label: int
    defect_type: str
    file_name: str
    mask: Union[str, os.PathLike, bytes, None] = None


def features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        "label": tfds.features.ClassLabel(names=LABEL_NAMES),
        "defect_type": tfds.features.Text(),
        "file_name": tfds.features.Text(),
    })


def _read(source, what: str, file_name: str) -> tuple[bytes, Image.Image]:
    """Encoded bytes and the fully decoded image; a clear error for unreadable files."""
    try:
        data = source if isinstance(source, bytes) else open(source, "rb").read()
        image = preprocess.open_image(data, preprocess.source_name(source))
    except preprocess.UnsupportedImageError as error:
        raise DatasetError(str(error)) from error
    except FileNotFoundError as error:
        raise DatasetError(f"{what} of {file_name} not found: {preprocess.source_name(source)}. "
                           "Restore the file or re-extract the dataset.") from error
    except Exception as error:  # PIL raises several unrelated types for broken files.
        raise DatasetError(f"Cannot decode {what} {preprocess.source_name(source)} ({error}). The file is corrupt or "
                           "not an image: re-extract the dataset or delete the file.") from error
    return data, image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_image(source, file_name: str) -> tuple[bytes, tuple[int, int]]:
    """PNG/JPEG bytes for the `image` feature (RGB, or 16-bit grey), and the size (width, height)."""
    data, image = _read(source, "image", file_name)
    if preprocess.is_sixteen_bit_grey(image):
        if image.format != "PNG":
            data = _png(Image.fromarray(np.asarray(image, np.uint16)))
        return data, image.size
    if (image.mode == "RGB" and image.format in ("PNG", "JPEG")
            and not image.info.get(preprocess.READ_FROM_16_BITS)):
        return data, image.size
    return _png(preprocess.to_rgb(image)), image.size


def encode_mask(source, image_size: tuple[int, int], file_name: str) -> bytes:
    """0..255 single-channel PNG of the mask at the image's size."""
    if source is None:
        return _png(Image.new("L", image_size, 0))
    _, mask = _read(source, "mask", file_name)
    try:
        grey = Image.fromarray(preprocess.mask_to_uint8(mask, preprocess.source_name(source)))
    except preprocess.UnsupportedImageError as error:
        raise DatasetError(str(error)) from error
    if grey.size != image_size:
        (mask_w, mask_h), (image_w, image_h) = grey.size, image_size
        if abs(mask_w / mask_h - image_w / image_h) > _ASPECT_TOLERANCE * image_w / image_h:
            raise DatasetError(
                f"Mask {preprocess.source_name(source)} is {mask_w}x{mask_h} but its image {file_name} is "
                f"{image_w}x{image_h} (a different shape): it is probably the mask of another image. "
                "Fix or remove the mask.")
        logging.warning("Mask %s is %dx%d, image %s is %dx%d: resizing the mask (bilinear).",
                        preprocess.source_name(source), mask_w, mask_h, file_name, image_w, image_h)
        grey = grey.resize(image_size, Image.Resampling.BILINEAR)
    return _png(grey)


def encode_sample(sample: Sample) -> dict:
    """Validates one sample and returns the example dict the features expect."""
    if sample.label not in (0, 1):
        raise DatasetError(f"{sample.file_name}: label must be 0 (good) or 1 (defective), got {sample.label}.")
    image, size = encode_image(sample.image, sample.file_name)
    return {
        "image": image,
        "mask": encode_mask(sample.mask, size, sample.file_name),
        "label": sample.label,
        "defect_type": sample.defect_type,
        "file_name": sample.file_name,
    }


class AnomalyBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of every dataset builder: one config per category, splits from `list_samples`.

    Subclasses set `BUILDER_CONFIGS`, `MANUAL_DOWNLOAD_INSTRUCTIONS` (or generate their data) and
    implement `list_samples(root, category)`. `HAS_MASKS = False` (`ImageLabelBuilder`) marks
    image-label datasets: their defective images get all-zero masks instead of an error.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    HAS_MASKS = True
    HOMEPAGE = ""
    CITATION = ""
    DESCRIPTION = ""
    # (url, hash algorithm, hex digest) of a public archive, or None (manual download only).
    DOWNLOAD: Optional[tuple[str, str, str]] = None
    # Set by `rgpkd_jax.data.prepare`: the folder with the source files (TFDS would otherwise
    # substitute its own default `<data_dir>/downloads/manual`), and whether to fetch DOWNLOAD
    # when there is none.
    manual_dir: Optional[str] = None
    allow_download = False

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=features(),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    @property
    def category(self) -> str:
        return self.builder_config.name

    def source_root(self, dl_manager) -> str:
        """The folder holding the dataset in its own layout (the manual dir by default)."""
        return source.locate_source(type(self), self.manual_dir, dl_manager.download_dir,
                                      allow_download=self.allow_download)

    def list_samples(self, root: str, category: str) -> Mapping[str, Sequence[Sample]]:
        raise NotImplementedError

    def has_masks(self, root: str) -> bool:
        """Whether the category has ground-truth masks: `HAS_MASKS` unless the data decides (a
        folder dataset without a ground_truth folder has image labels only)."""
        return self.HAS_MASKS

    def source_fingerprint(self, root: str, splits: Mapping[str, Sequence[Sample]] | None = None) -> dict:
        """`source.fingerprint` of the image and mask files of the category's samples under `root`."""
        splits = self.list_samples(root, self.category) if splits is None else splits
        files = [path for samples in splits.values() for sample in samples
                 for path in (sample.image, sample.mask) if isinstance(path, (str, os.PathLike))]
        return source.fingerprint(root, files)

    def _split_generators(self, dl_manager):
        root = self.source_root(dl_manager)
        splits = self.list_samples(root, self.category)
        has_masks = self.has_masks(root)
        for split, samples in splits.items():
            if not samples:
                raise DatasetError(f"{self.name}/{self.category}: the {split} split has no images.")
            if not has_masks:
                continue
            for sample in samples:
                if sample.label == 1 and sample.mask is None:
                    raise DatasetError(
                        f"Defective image {sample.file_name} has no ground-truth mask. Restore the mask "
                        "(see the dataset's layout in MANUAL_DOWNLOAD_INSTRUCTIONS) or remove the image.")
        self.info.metadata[SOURCE_FINGERPRINT] = self.source_fingerprint(root, splits)
        self.info.metadata[HAS_MASKS_KEY] = has_masks
        return {split: self._generate_examples(samples, split) for split, samples in splits.items()}

    def _generate_examples(self, samples: Iterable[Sample], split: str) -> Iterator[tuple[int, dict]]:
        empty_masks = []
        for index, sample in enumerate(samples):
            example = encode_sample(sample)
            if sample.label == 1 and sample.mask is not None and not _has_foreground(example["mask"]):
                empty_masks.append(sample.file_name)
            yield index, example
        if empty_masks:
            # They would count as defective in image AUROC but add no defect pixel to the pixel
            # metrics, and the per-image AUPRO leaves them out (docs/reference.md §5.5).
            logging.warning("%s/%s %s split: %d defective images have an empty mask (no defect "
                            "pixel); fix or remove the masks, or the images: %s", self.name,
                            self.category, split, len(empty_masks), ", ".join(empty_masks))


class ImageLabelBuilder(AnomalyBuilder, skip_registration=True):
    """Base of the datasets with image labels only (no ground-truth masks): their defective images
    get all-zero masks, so only the image-level metrics mean anything. Their scans build the
    splits with `layout.image_label_splits`."""

    HAS_MASKS = False


def _has_foreground(mask_png: bytes) -> bool:
    return bool(np.asarray(Image.open(io.BytesIO(mask_png))).any())
