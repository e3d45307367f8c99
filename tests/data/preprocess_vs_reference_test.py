"""Preprocessing against torchvision (the official RD4AD transforms), torch as the oracle."""

import io

import numpy as np
import pytest
from PIL import Image

from rgpkd_jax.data import preprocess


MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def _official_image_transform(size):
    from torchvision import transforms
    # get_data_transforms(size, size) of hq-deng/RD4AD, written from docs/reference.md §1.
    return transforms.Compose([
        transforms.Resize((size, size)),
        transforms.ToTensor(),
        transforms.CenterCrop(size),
        transforms.Normalize(mean=MEAN, std=STD),
    ])


def _official_mask_transform(size):
    from torchvision import transforms
    return transforms.Compose([
        transforms.Resize((size, size)),
        transforms.ToTensor(),
        transforms.CenterCrop(size),
    ])


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode,shape,size", [
    ("RGB", (75, 90, 3), 64),    # downscale, non-square source
    ("RGB", (40, 40, 3), 64),    # upscale
    ("L", (70, 70), 48),          # grayscale category (grid/screw/zipper)
    ("RGBA", (33, 50, 4), 32),
])
def test_image_matches_torchvision(mode, shape, size, torchvision):
    rng = np.random.default_rng(0)
    pil = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    assert pil.mode == mode
    expected = _official_image_transform(size)(pil.convert("RGB")).numpy().transpose(1, 2, 0)
    ours = preprocess.preprocess_image(_png(pil), size)
    assert ours.shape == (size, size, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_jpeg_bytes_decode_like_pil_path(tmp_path, torchvision):
    rng = np.random.default_rng(1)
    path = tmp_path / "x.JPG"
    Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(path, quality=90)
    expected = _official_image_transform(32)(Image.open(path).convert("RGB")).numpy()
    np.testing.assert_allclose(preprocess.preprocess_image(path.read_bytes(), 32),
                               expected.transpose(1, 2, 0), rtol=0, atol=1e-6)


def _blob_mask(height, width, foreground):
    yy, xx = np.mgrid[:height, :width]
    inside = (yy - height / 2) ** 2 + ((xx - width / 3) * 1.3) ** 2 < (min(height, width) / 3) ** 2
    return (inside * foreground).astype(np.uint8)


@pytest.mark.parametrize("size", [16, 32, 100])
@pytest.mark.parametrize("threshold", [None, 0.0, 0.5, 0.9])
def test_mask_matches_torchvision_then_threshold(size, threshold, torchvision):
    """None: the default, the official > 0.5; 0.0 keeps every pixel the resize touched
    (config.eval.mask_threshold, docs/protocol.md)."""
    mask = Image.fromarray(_blob_mask(61, 77, 255))
    resized = _official_mask_transform(size)(mask)[0].numpy()
    expected = (resized > (0.5 if threshold is None else threshold)).astype(np.float32)
    ours = preprocess.preprocess_mask(_png(mask), size, *([] if threshold is None else [threshold]))
    assert ours.dtype == np.float32 and ours.shape == (size, size)
    np.testing.assert_array_equal(ours, expected)
    assert 0 < ours.sum() < size * size


def test_mask_threshold_outside_zero_one_is_refused():
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match=r"config.eval.mask_threshold must be a number in \[0, 1\)"):
            preprocess.check_mask_threshold(bad)


def test_zero_one_mask_equals_zero_255_mask():
    # VisA pitfall (docs/reference.md §3.3): a 0/1 mask must not vanish.
    zero_one = preprocess.preprocess_mask(_png(Image.fromarray(_blob_mask(40, 40, 1))), 32)
    zero_255 = preprocess.preprocess_mask(_png(Image.fromarray(_blob_mask(40, 40, 255))), 32)
    np.testing.assert_array_equal(zero_one, zero_255)
    assert zero_one.sum() > 0


def test_rgb_mask_is_read_as_grey():
    grey = _blob_mask(40, 40, 255)
    rgb = Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(preprocess.preprocess_mask(rgb, 24),
                                  preprocess.preprocess_mask(Image.fromarray(grey), 24))


def test_denormalize_inverts_normalisation():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    normalised = preprocess.preprocess_image(Image.fromarray(pixels), 20)
    np.testing.assert_allclose(preprocess.denormalize(normalised), pixels / 255.0, atol=1e-6)


def test_corrupt_bytes_raise():
    with pytest.raises(Exception):
        preprocess.preprocess_image(b"\x89PNG\r\n\x1a\nnot really a png", 8)
