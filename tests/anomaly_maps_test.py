"""anomaly_maps against torch (cosine, align_corners=True upsampling) and scipy (Gaussian filter)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from rgpkd_jax import anomaly_maps

TOLERANCE = 1e-5


def nchw(x: np.ndarray):
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))


def test_cosine_distance_equals_torch_including_tiny_and_zero_vectors(torch):
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(2, 5, 6, 16)).astype(np.float32)
    student = rng.normal(size=(2, 5, 6, 16)).astype(np.float32)
    teacher[0, 0, 0] = 0.0             # zero vector
    teacher[0, 0, 1] *= 1e-10          # norms below eps: torch clamps each norm separately
    student[0, 0, 1] *= 1e-10
    student[1, 2, 3] = teacher[1, 2, 3]  # identical vectors
    expected = 1 - F.cosine_similarity(nchw(teacher), nchw(student), dim=1, eps=1e-8).numpy()
    got = anomaly_maps.cosine_distance_map(jnp.asarray(teacher), jnp.asarray(student))
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("in_hw,out_hw", [((16, 16), (64, 64)), ((4, 7), (33, 20)), ((1, 3), (5, 5)),
                                          ((9, 9), (1, 4)), ((64, 64), (256, 256)), ((10, 10), (6, 6))])
def test_upsample_align_corners_equals_torch(in_hw, out_hw, torch):
    x = np.random.default_rng(1).normal(size=(3, *in_hw)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=out_hw, mode="bilinear",
                             align_corners=True)[:, 0].numpy()
    got = anomaly_maps.upsample_align_corners(jnp.asarray(x), out_hw)
    np.testing.assert_allclose(np.asarray(got), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 40, 33), (1, 5, 7), (1, 1, 3)])
@pytest.mark.parametrize("sigma,truncate", [(4.0, 4.0), (1.5, 4.0), (0.7, 2.5), (4.0, 1.0)])
def test_gaussian_blur_equals_scipy(shape, sigma, truncate):
    # (1, 5, 7) and (1, 1, 3) have a radius (16 at sigma 4) larger than the image.
    x = np.random.default_rng(2).random(shape) * 2
    expected = np.stack([scipy.ndimage.gaussian_filter(m, sigma, truncate=truncate) for m in x])
    got = anomaly_maps.gaussian_blur(jnp.asarray(x, jnp.float32), sigma, truncate)
    np.testing.assert_allclose(np.asarray(got), expected, atol=TOLERANCE, rtol=0)


def test_gaussian_kernel_is_scipys_33_taps_at_sigma_4():
    kernel = anomaly_maps.gaussian_kernel1d(4.0)
    impulse = np.zeros(101)
    impulse[50] = 1
    assert kernel.size == 33
    np.testing.assert_allclose(kernel, scipy.ndimage.gaussian_filter1d(impulse, 4.0)[34:67],
                               atol=1e-15)


def test_gaussian_blur_sigma_zero_and_bad_sigma():
    x = jnp.ones((1, 4, 4))
    assert anomaly_maps.gaussian_blur(x, 0.0) is x
    with pytest.raises(ValueError, match="sigma and truncate must be >= 0"):
        anomaly_maps.gaussian_blur(x, -1.0)
    with pytest.raises(ValueError, match=r"expects \(B, H, W\)"):
        anomaly_maps.gaussian_blur(jnp.ones((4, 4)))


def reference_anomaly_map(teacher, student, size, sigma, combine):
    """docs/reference.md §2.5 with torch and scipy, in float64 after the torch steps."""
    import torch.nn.functional as F
    total = np.ones((len(teacher[0]), size, size)) if combine == "product" else 0.0
    for t, s in zip(teacher, student):
        level = 1 - F.cosine_similarity(nchw(t), nchw(s), dim=1)[:, None]
        level = F.interpolate(level, size=size, mode="bilinear", align_corners=True)[:, 0]
        total = total * level.numpy() if combine == "product" else total + level.numpy()
    return np.stack([scipy.ndimage.gaussian_filter(m.astype(np.float64), sigma) for m in total])


@pytest.mark.parametrize("combine", ["sum", "product"])
def test_anomaly_map_equals_reference(combine, torch):
    rng = np.random.default_rng(3)
    shapes = [(2, 16, 16, 8), (2, 8, 8, 16), (2, 4, 4, 32)]
    teacher = [rng.normal(size=s).astype(np.float32) for s in shapes]
    student = [(t + rng.normal(size=t.shape)).astype(np.float32) for t in teacher]
    expected = reference_anomaly_map(teacher, student, 64, 4.0, combine)
    got = anomaly_maps.anomaly_map([jnp.asarray(t) for t in teacher],
                                   [jnp.asarray(s) for s in student], 64, combine=combine)
    assert got.shape == (2, 64, 64)
    np.testing.assert_allclose(np.asarray(got), expected, atol=TOLERANCE, rtol=0)


def test_anomaly_map_inside_an_outer_jit_with_shape_tuple():
    teacher = [jnp.ones((1, 8, 8, 4)), jnp.ones((1, 4, 4, 8))]
    student = [jnp.ones((1, 8, 8, 4)), -jnp.ones((1, 4, 4, 8))]
    fn = jax.jit(lambda t, s, img: anomaly_maps.anomaly_map(t, s, img.shape[1:3]))
    got = fn(teacher, student, jnp.zeros((1, 32, 24, 3)))
    np.testing.assert_allclose(np.asarray(got), np.full((1, 32, 24), 2.0), atol=TOLERANCE)


def test_anomaly_map_rejects_mismatched_features():
    t = [jnp.ones((1, 8, 8, 4))]
    with pytest.raises(ValueError, match="one student feature per teacher feature"):
        anomaly_maps.anomaly_map(t, t + t, 32)
    with pytest.raises(ValueError, match="equal shapes"):
        anomaly_maps.anomaly_map(t, [jnp.ones((1, 8, 8, 5))], 32)
    with pytest.raises(ValueError, match="combine must be one of"):
        anomaly_maps.anomaly_map(t, t, 32, combine="max")


def test_image_scores_max_and_topk_mean():
    maps = np.random.default_rng(4).random((3, 10, 12)).astype(np.float32)
    np.testing.assert_allclose(anomaly_maps.image_scores(jnp.asarray(maps)),
                               maps.reshape(3, -1).max(axis=1))
    top5 = np.sort(maps.reshape(3, -1), axis=1)[:, -5:].mean(axis=1)
    np.testing.assert_allclose(anomaly_maps.image_scores(jnp.asarray(maps), "topk_mean", k=5),
                               top5, rtol=1e-6)
    with pytest.raises(ValueError, match="score mode must be one of"):
        anomaly_maps.image_scores(jnp.asarray(maps), "median")
    with pytest.raises(ValueError, match="1 <= k <= H\\*W = 120"):
        anomaly_maps.image_scores(jnp.asarray(maps), "topk_mean", k=121)


def test_reconstruction_error_map():
    rng = np.random.default_rng(5)
    rec, image = rng.random((2, 2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(anomaly_maps.reconstruction_error_map(rec, image),
                               ((rec - image) ** 2).mean(axis=-1), rtol=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        anomaly_maps.reconstruction_error_map(rec, image[..., :1])
