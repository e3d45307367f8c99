"""Official AU-PRO and RD4AD per-image AUPRO against the slow references in aupro_reference.py."""

import warnings

import numpy as np
import pytest

import aupro_reference
from rgpkd_jax.metrics import aupro as aupro_module
from rgpkd_jax.metrics.aupro import aupro, aupro_rd4ad_per_image, pro_curve

TOLERANCE = 1e-6


def random_masks(rng, num_images, size, good_fraction=0.3):
    """Rectangles, single pixels and diagonal pixel pairs; some images without any defect."""
    masks = np.zeros((num_images, size, size), dtype=np.float32)
    for mask in masks[int(good_fraction * num_images):]:
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, size - 2, 2)
            h, w = rng.integers(1, size // 3, 2)
            mask[y:y + h, x:x + w] = 1
        for _ in range(rng.integers(0, 3)):  # tiny regions
            y, x = rng.integers(0, size - 1, 2)
            mask[y, x] = 1
            if rng.random() < 0.5:
                mask[y + 1, x + 1] = 1  # joined to (y, x) only through a corner
    return masks[rng.permutation(num_images)]


def random_maps(rng, masks, levels=None):
    """Scores overlapping between classes; `levels` quantises them to force ties."""
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    if levels:
        maps = np.round((maps - maps.min()) / np.ptp(maps) * (levels - 1))
    return maps.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("levels", [None, 7])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_official_aupro_equals_reference(seed, levels, fpr_limit):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, num_images=6, size=12)
    maps = random_maps(rng, masks, levels)
    expected = aupro_reference.official_aupro(maps, masks, fpr_limit)
    assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(expected, abs=TOLERANCE)


def test_official_aupro_mostly_good_images_with_high_scores():
    rng = np.random.default_rng(3)
    masks = random_masks(rng, num_images=8, size=10, good_fraction=0.85)
    maps = random_maps(rng, masks)
    maps[~masks.reshape(8, -1).any(axis=1)] += 1.0  # good images outscore the defects often
    expected = aupro_reference.official_aupro(maps, masks)
    assert aupro(maps, masks) == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize("tied_at_limit", [False, True])
def test_official_aupro_threshold_exactly_at_fpr_limit(tied_at_limit):
    # 10 normal pixels: the 3rd highest one brings the FPR to exactly 0.3. With tied_at_limit the
    # 3rd and 4th tie with each other and with a defective pixel: a diagonal step across 0.3.
    normal = np.array([0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.15, 0.05])
    defective = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2])
    if tied_at_limit:
        normal[2:4] = 0.7
    maps = np.concatenate([defective, normal]).reshape(1, 2, 10).astype(np.float32)
    masks = np.concatenate([np.ones(10), np.zeros(10)]).reshape(1, 2, 10)
    expected = aupro_reference.official_aupro(maps, masks)
    assert aupro(maps, masks) == pytest.approx(expected, abs=TOLERANCE)
    fpr, _ = pro_curve(maps, masks, fpr_limit=0.3)
    assert fpr[-1] == pytest.approx(0.3) and np.all(np.diff(fpr) >= 0)


def test_official_aupro_hand_computed():
    # Two single-pixel regions (0.9 and 0.6); normals 0.8, 0.4, 0.2, 0.05 (FPR step 1/4).
    # Curve (0,0) (0,.5) (1/4,.5) (1/4,1) ... (1,1): area to FPR 0.5 = 1/8 + 1/4, over 0.5.
    maps = np.array([[[0.9, 0.05, 0.6, 0.8, 0.4, 0.2]]], dtype=np.float32)
    masks = np.array([[[1, 0, 1, 0, 0, 0]]])
    assert aupro(maps, masks, fpr_limit=0.5) == pytest.approx((1 / 8 + 1 / 4) / 0.5, abs=1e-12)
    # A tie between the normal 0.8 and the region at 0.6 (raised to 0.8): a diagonal segment
    # (0,.5) -> (1/4,1), area to 0.5 = 0.1875 + 0.25.
    maps[0, 0, 2] = 0.8
    assert aupro(maps, masks, fpr_limit=0.5) == pytest.approx((0.1875 + 0.25) / 0.5, abs=1e-12)


def test_official_aupro_uses_8_connectivity():
    # 4-connected: regions of 2 and 1 pixels; 8-connected: one region of 3. Only the lone pixel
    # scores high, so the first PRO step is 1/3 (8-conn.) rather than 1/2 (4-conn.).
    masks = np.array([[[1, 1, 0], [0, 0, 1]]])
    maps = np.array([[[0.1, 0.1, 0.5], [0.6, 0.4, 0.9]]], dtype=np.float32)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(1 / 3, abs=1e-12)


def test_official_aupro_perfect_and_inverted_maps():
    rng = np.random.default_rng(4)
    masks = random_masks(rng, num_images=4, size=16)
    scores = rng.random(masks.shape).astype(np.float32)
    assert aupro(scores + 2 * masks, masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro(scores - 2 * masks, masks) == pytest.approx(0.0, abs=1e-12)


def test_pro_curve_shape():
    rng = np.random.default_rng(5)
    masks = random_masks(rng, num_images=5, size=16)
    maps = random_maps(rng, masks)
    fpr, pro = pro_curve(maps, masks, fpr_limit=0.3)
    assert (fpr[0], pro[0]) == (0.0, 0.0) and fpr[-1] == pytest.approx(0.3)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12) and pro.max() <= 1.0
    assert np.trapezoid(pro, fpr) / 0.3 == pytest.approx(aupro_reference.official_aupro(maps, masks),
                                                         abs=TOLERANCE)


def test_official_aupro_bad_inputs_give_clear_errors():
    masks = np.zeros((2, 8, 8))
    maps = np.zeros((2, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="no ground-truth mask has a defective pixel"):
        aupro(maps, masks)
    masks[0, :2, :2] = 1
    with pytest.raises(ValueError, match="every pixel is defective"):
        aupro(maps, np.ones_like(masks))
    bad = maps.copy()
    bad[0, 0, :3] = np.nan
    bad[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="4 of 128 values are NaN or infinite"):
        aupro(bad, masks)
    with pytest.raises(ValueError, match="only 0 and 1"):
        aupro(maps, masks * 255)
    with pytest.raises(ValueError, match="same resolution"):
        aupro(maps[:, :4], masks)
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, masks, fpr_limit=0.0)


def test_official_aupro_constant_maps_is_half_the_limit_triangle():
    # One tie group: the curve goes straight from (0, 0) to (1, 1); area to 0.3 is 0.045 / 0.3.
    masks = np.zeros((2, 8, 8))
    masks[0, 2:4, 2:5] = 1
    assert aupro(np.ones((2, 8, 8)), masks) == pytest.approx(0.15, abs=1e-12)


# ---- RD4AD per-image variant (docs/reference.md §2.6) -------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("levels", [None, 9])
@pytest.mark.parametrize("fpr_limit", [0.3, 0.5])
def test_rd4ad_per_image_equals_reference(seed, levels, fpr_limit):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, num_images=6, size=24)
    maps = random_maps(rng, masks, levels)
    result = aupro_rd4ad_per_image(maps, masks, fpr_limit=fpr_limit)
    defective = masks.reshape(6, -1).any(axis=1)
    expected = [aupro_reference.rd4ad_image_aupro(maps[i], masks[i].astype(int), fpr_limit)
                for i in np.flatnonzero(defective)]
    np.testing.assert_allclose(result.per_image[defective], expected, atol=TOLERANCE, rtol=0)
    assert np.all(np.isnan(result.per_image[~defective]))  # good images never enter
    assert result.mean == pytest.approx(np.mean(expected), abs=TOLERANCE)
    assert result.num_images == len(expected) and result.skipped == {}


def test_rd4ad_per_image_scores_exactly_on_thresholds():
    # Scores k / 256 with min 0 and max 200 / 256: the step is exactly 1 / 256, so every score
    # equals a threshold and only the strict `score > threshold` rule gives the reference.
    rng = np.random.default_rng(6)
    masks = random_masks(rng, num_images=4, size=24, good_fraction=0.0)
    maps = (rng.integers(0, 150, masks.shape) + 50 * masks) / 256
    maps[:, 0, 0], maps[:, -1, -1] = 0.0, 200 / 256
    result = aupro_rd4ad_per_image(maps.astype(np.float32), masks)
    expected = [aupro_reference.rd4ad_image_aupro(m, k.astype(int))
                for m, k in zip(maps.astype(np.float32), masks)]
    np.testing.assert_allclose(result.per_image, expected, atol=TOLERANCE, rtol=0)


def test_rd4ad_per_image_float64_maps_as_the_official_code():
    rng = np.random.default_rng(7)
    masks = random_masks(rng, num_images=3, size=20, good_fraction=0.0)
    maps = random_maps(rng, masks).astype(np.float64)
    result = aupro_rd4ad_per_image(maps, masks)
    expected = [aupro_reference.rd4ad_image_aupro(m, k.astype(int)) for m, k in zip(maps, masks)]
    np.testing.assert_allclose(result.per_image, expected, atol=TOLERANCE, rtol=0)


def degenerate_images():
    """One image per case where the official code crashes (or gives NaN), and one ordinary image."""
    size = 16
    masks = np.zeros((5, size, size))
    masks[:, 4:8, 4:8] = 1
    rng = np.random.default_rng(8)
    maps = rng.random((5, size, size))
    maps[0] = 0.5                                  # constant map
    masks[1] = 1                                   # mask covers the image
    maps[2] = np.where(masks[2] > 0, 0.0, 1.0)     # normals all at the max: FPR 1 everywhere
    maps[3] = np.where(masks[3] > 0, 1.0 + maps[3], 0.0)  # normals all at the min: FPR 0
    return maps, masks


def test_rd4ad_per_image_skips_and_counts_where_official_code_fails():
    maps, masks = degenerate_images()
    result = aupro_rd4ad_per_image(maps, masks)
    assert result.skipped == {
        aupro_module.SKIP_CONSTANT_MAP: 1, aupro_module.SKIP_NO_NORMAL_PIXEL: 1,
        aupro_module.SKIP_TOO_FEW_POINTS: 1, aupro_module.SKIP_ZERO_FPR: 1}
    assert np.all(np.isnan(result.per_image[:4])) and result.num_images == 1
    assert result.mean == pytest.approx(aupro_reference.rd4ad_image_aupro(maps[4], masks[4]),
                                        abs=TOLERANCE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(3):
            with pytest.raises(ValueError):
                aupro_reference.rd4ad_image_aupro(maps[i], masks[i])
        assert np.isnan(aupro_reference.rd4ad_image_aupro(maps[3], masks[3]))  # 0 / 0 FPR axis


def test_rd4ad_per_image_without_any_usable_image_raises():
    maps, masks = degenerate_images()
    with pytest.raises(ValueError, match="none gave a value"):
        aupro_rd4ad_per_image(maps[:4], masks[:4])
    with pytest.raises(ValueError, match="NaN or infinite"):
        aupro_rd4ad_per_image(np.full_like(maps, np.nan), masks)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_counting_equals_searchsorted(dtype):
    """The per-image AUPRO's arithmetic threshold count is np.searchsorted(side='left') exactly:
    scores on, next to and between the np.arange thresholds, at magnitudes where rounding bites,
    and tiny ranges where np.arange repeats values."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        scale, offset = 10.0 ** rng.uniform(-7, 4), rng.uniform(-1e3, 1e3)
        scores = (offset + scale * rng.normal(size=rng.integers(2, 3000))).astype(dtype)
        if trial % 3 == 0:
            scores = np.round(scores, 2).astype(dtype)  # ties
        low, high = scores.min(), scores.max()
        if low == high:
            continue
        thresholds = np.arange(low, high, (high - low) / 200)
        probes = np.concatenate([scores, thresholds, np.nextafter(thresholds, np.inf),
                                 np.nextafter(thresholds, -np.inf)]).astype(thresholds.dtype)
        np.testing.assert_array_equal(aupro_module._count_thresholds_below(thresholds, probes),
                                      np.searchsorted(thresholds, probes, side="left"))


def test_rd4ad_per_image_counts_and_lists_defective_images_with_empty_masks():
    # A defect smaller than a pixel at the evaluation size leaves a labelled-defective image with
    # an empty mask: it must be counted and listed, not silently dropped.
    rng = np.random.default_rng(11)
    masks = np.zeros((5, 24, 24), np.float32)
    masks[1, 3:9, 4:10] = 1
    masks[3, 10:20, 12:18] = 1
    maps = rng.random(masks.shape) + masks
    labels = np.array([0, 1, 1, 1, 1])
    result = aupro_rd4ad_per_image(maps, masks, labels)
    assert result.skipped_images == {aupro_module.SKIP_EMPTY_MASK: [2, 4]}
    assert result.skipped == {aupro_module.SKIP_EMPTY_MASK: 2} and result.num_images == 2
    expected = np.mean([aupro_reference.rd4ad_image_aupro(maps[i], masks[i]) for i in (1, 3)])
    assert result.mean == pytest.approx(expected, abs=TOLERANCE)
    assert aupro_rd4ad_per_image(maps, masks).skipped == {}  # without labels: not knowable
