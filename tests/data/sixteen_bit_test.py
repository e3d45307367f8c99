"""16-bit images and masks: read at full depth (scaled by 65535) or refused, never clipped to white."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import rgpkd_jax.data as data_lib
from rgpkd_jax.data import pipeline, preprocess
from rgpkd_jax.data.errors import DatasetError
from tests.data import fixtures

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _normalised(unit_grey_or_rgb):
    """Numpy reference: [0, 1] pixels -> (H, W, 3) ImageNet-normalised (float64)."""
    pixels = np.asarray(unit_grey_or_rgb, np.float64)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    return (pixels - MEAN) / STD


def _sixteen_bit_grey(shape=(24, 30), seed=0):
    values = np.random.default_rng(seed).integers(0, 65536, shape).astype(np.uint16)
    values[0, 0], values[0, 1] = 0, 65535  # the full range
    return values


def _encode(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _sixteen_bit_rgb_png(values):
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    height, width, _ = values.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_grey_image_is_read_at_full_depth(fmt):
    values = _sixteen_bit_grey()
    pil = Image.fromarray(values)
    assert pil.mode == "I;16"
    encoded = _encode(pil, fmt)
    ours = preprocess.preprocess_image(encoded, values.shape)
    np.testing.assert_allclose(ours, _normalised(values / 65535.0), rtol=0, atol=1e-5)
    big_endian = Image.fromarray(values.astype(">u2"))  # mode I;16B
    np.testing.assert_allclose(preprocess.preprocess_image(big_endian, values.shape), ours, atol=1e-6)


def test_resized_sixteen_bit_grey_matches_the_same_picture_in_8_bits():
    eight_bit = fixtures.image_array("sixteen", grayscale=True)
    sixteen_bit = eight_bit.astype(np.uint16) * 257  # v / 255 == 257 v / 65535 exactly
    ours = preprocess.preprocess_image(_encode(Image.fromarray(sixteen_bit)), 20)
    expected = preprocess.preprocess_image(_encode(Image.fromarray(eight_bit)), 20)
    # The 8-bit path resizes in PIL's fixed point and rounds to uint8: within one 8-bit level.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1 / 255 / STD.min() + 1e-6)


def test_sixteen_bit_colour_is_read_from_its_high_byte_with_a_warning(tmp_path, caplog):
    values = np.random.default_rng(1).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    path = tmp_path / "colour16.png"
    path.write_bytes(_sixteen_bit_rgb_png(values))
    ours = preprocess.preprocess_image(path, values.shape[:2])
    np.testing.assert_allclose(ours, _normalised((values >> 8) / 255.0), rtol=0, atol=1e-5)
    assert np.abs(ours - _normalised(values / 65535.0)).max() <= 1 / 255 / STD.min()
    assert any(str(path) in r.getMessage() and "8 bits" in r.getMessage() for r in caplog.records)


def test_thirty_two_bit_images_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / "float.tiff"
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(path)
    with pytest.raises(preprocess.UnsupportedImageError, match="float.tiff.*32-bit float"):
        preprocess.preprocess_image(path, 8)


@pytest.mark.parametrize("foreground", [65535, 1])
def test_sixteen_bit_mask_equals_the_8_bit_mask(foreground):
    blob = fixtures.mask_array("m", foreground=1).astype(np.uint16)
    eight_bit = preprocess.preprocess_mask(_encode(Image.fromarray((blob * 255).astype(np.uint8))), 20)
    ours = preprocess.preprocess_mask(_encode(Image.fromarray(blob * np.uint16(foreground))), 20)
    assert eight_bit.any()
    np.testing.assert_array_equal(ours, eight_bit)


def test_sixteen_bit_mask_that_would_vanish_is_refused(tmp_path):
    path = tmp_path / "mask16.png"
    Image.fromarray(fixtures.mask_array("m").astype(np.uint16)).save(path)  # 0/255 in 16 bits
    with pytest.raises(preprocess.UnsupportedImageError, match="mask16.png.*largest value is 255"):
        preprocess.preprocess_mask(path, 20)


def _config(data_dir, manual_dir, size):
    import ml_collections
    return ml_collections.ConfigDict({
        "seed": 0, "train": {"batch_size": 2},
        "dataset": {"name": "mvtec_ad", "category": "bottle", "data_dir": data_dir,
                    "manual_dir": manual_dir, "image_size": size}})


def test_prepared_dataset_keeps_sixteen_bit_grey_images_and_masks(tmp_path):
    root = str(tmp_path / "src")
    written = fixtures.write_mvtec(root, "bottle", num_train=2, num_test_good=1, defects=(("crack", 1),))
    image_path, _ = written["test"][-1]
    values = _sixteen_bit_grey(fixtures.SIZE, seed=2)
    Image.fromarray(values).save(image_path)
    mask_path = written["masks"][image_path]
    mask = fixtures.mask_array("crack16").astype(np.uint16)
    Image.fromarray(mask * np.uint16(257)).save(mask_path)  # 0/65535
    batch = next(pipeline.test_batches(_config(str(tmp_path / "tfds"), root, fixtures.SIZE), batch_size=4))
    index = list(batch["file_name"]).index(os.path.relpath(image_path, root).replace(os.sep, "/"))
    np.testing.assert_allclose(batch["image"][index], _normalised(values / 65535.0), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(batch["mask"][index], mask / 255)


def test_prepare_refuses_a_vanishing_sixteen_bit_mask_naming_it(tmp_path):
    root = str(tmp_path / "src")
    written = fixtures.write_mvtec(root, "bottle", num_train=2, num_test_good=1, defects=(("crack", 1),))
    mask_path = next(iter(written["masks"].values()))
    Image.fromarray(fixtures.mask_array("x").astype(np.uint16)).save(mask_path)
    builder = data_lib.get_builder("mvtec_ad", "bottle", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DatasetError, match=os.path.basename(mask_path)):
        data_lib.prepare(builder, root)
