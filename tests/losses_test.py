"""rgpkd_jax.losses against independent references: numpy, scikit-image and torch (oracle only)."""

import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from rgpkd_jax import losses



def _levels(rng, batch=3):
    """Teacher/student pairs shaped like ResNet18 taps at 64 px (NHWC)."""
    shapes = [(batch, 16, 16, 8), (batch, 8, 8, 16), (batch, 4, 4, 32)]
    teacher = [rng.normal(size=s).astype(np.float32) for s in shapes]
    student = [t + 0.7 * rng.normal(size=t.shape).astype(np.float32) for t in teacher]
    return teacher, student


def _np_cos(a, b, axis):
    """Torch semantics in float64: each norm clamped at 1e-8 separately."""
    na = np.maximum(np.linalg.norm(a, axis=axis, keepdims=True), 1e-8)
    nb = np.maximum(np.linalg.norm(b, axis=axis, keepdims=True), 1e-8)
    return np.sum(a / na * b / nb, axis=axis)


def test_flattened_cosine_matches_numpy_reference():
    teacher, student = _levels(np.random.default_rng(0))
    expected = sum(np.mean(1 - _np_cos(t.reshape(len(t), -1).astype(np.float64),
                                       s.reshape(len(s), -1).astype(np.float64), axis=1))
                   for t, s in zip(teacher, student))
    got = losses.flattened_cosine_distance([jnp.asarray(t) for t in teacher], [jnp.asarray(s) for s in student])
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    assert float(losses.distillation_loss(teacher, student, "cosine")) == pytest.approx(float(got))


def test_flattened_cosine_equals_torch_on_nchw_with_zero_sample(torch):
    """The official code flattens NCHW; the flattened cosine does not depend on the layout. A zero
    sample exercises torch's eps clamp (cos = 0, distance 1)."""
    teacher, student = _levels(np.random.default_rng(1))
    student[0][1] = 0.0
    cos = torch.nn.CosineSimilarity()
    expected = sum(torch.mean(1 - cos(torch.from_numpy(t).permute(0, 3, 1, 2).reshape(len(t), -1),
                                      torch.from_numpy(s).permute(0, 3, 1, 2).reshape(len(s), -1))).item()
                   for t, s in zip(teacher, student))
    got = losses.flattened_cosine_distance(teacher, student)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_per_pixel_cosine_matches_numpy_reference():
    teacher, student = _levels(np.random.default_rng(2))
    expected = sum(np.mean(1 - _np_cos(t.astype(np.float64), s.astype(np.float64), axis=-1))
                   for t, s in zip(teacher, student))
    got = losses.distillation_loss(teacher, student, "cosine_per_pixel")
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_mse_and_mix_modes():
    teacher, student = _levels(np.random.default_rng(3))
    level_mse = sum(np.mean((t.astype(np.float64) - s) ** 2) for t, s in zip(teacher, student))
    cosine = float(losses.flattened_cosine_distance(teacher, student))
    np.testing.assert_allclose(float(losses.distillation_loss(teacher, student, "mse")), level_mse, rtol=1e-5)
    np.testing.assert_allclose(float(losses.distillation_loss(teacher, student, "mix")),
                               0.5 * level_mse + 0.5 * cosine, rtol=1e-5)


def test_resize_align_corners_matches_torch(torch):
    x = np.random.default_rng(4).normal(size=(2, 5, 7, 3)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(16, 13), mode="bilinear",
                             align_corners=True).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(losses.resize_bilinear_align_corners(x, (16, 13))), expected,
                               rtol=1e-5, atol=1e-6)


def _official_consistency(torch, teacher, student, sizes):
    """Official loss_function_2 written with torch ops on NCHW, a = teacher, b = student; the
    official code has sizes = (64, 32)."""
    a = [torch.from_numpy(t).permute(0, 3, 1, 2) for t in teacher]
    b = [torch.from_numpy(s).permute(0, 3, 1, 2) for s in student]
    up = lambda v, size: torch.nn.functional.interpolate(v, size=size, mode="bilinear", align_corners=True)
    mse = torch.nn.MSELoss()
    return (abs(mse(up(a[2], sizes[1]), up(b[2], sizes[1])) - mse(a[1], b[1]))
            + abs(mse(up(a[1], sizes[0]), up(b[1], sizes[0])) - mse(a[0], b[0]))).item()


def _levels_at_128px(rng, batch=2):
    """Taps shaped like a ResNet18's at 128 px (32², 16², 8²), fewer channels; the deeper levels
    are rougher than the shallow one, so that resizing them changes their MSE."""
    shapes = [(batch, 32, 32, 4), (batch, 16, 16, 8), (batch, 8, 8, 8)]
    teacher = [rng.normal(size=s).astype(np.float32) for s in shapes]
    student = [t + (0.3 + k) * rng.normal(size=t.shape).astype(np.float32) for k, t in enumerate(teacher)]
    return teacher, student


def test_consistency_loss_fixed_sizes_are_the_official_definition_at_128px(torch):
    """Default (config.model.consistency_sizes='fixed'): the official fixed sizes 64 and 32, which
    at 128 px are not the levels' sizes (32 and 16); the two definitions differ there."""
    teacher, student = _levels_at_128px(np.random.default_rng(5))
    official = _official_consistency(torch, teacher, student, (64, 32))
    np.testing.assert_allclose(float(losses.consistency_loss(teacher, student)), official, rtol=1e-5)
    per_level = _official_consistency(torch, teacher, student, (32, 16))
    np.testing.assert_allclose(float(losses.consistency_loss(teacher, student, "per_level")), per_level,
                               rtol=1e-5)
    assert abs(official - per_level) > 1e-3 * abs(official)


def test_consistency_loss_per_level_equals_fixed_at_256px_sizes(torch):
    """At 256 px the levels are 64², 32², 16²: both options are the official term."""
    teacher, student = _levels(np.random.default_rng(6))
    teacher, student = ([np.repeat(np.repeat(v, 4, axis=1), 4, axis=2) for v in levels]
                        for levels in (teacher, student))  # 16², 8², 4² -> 64², 32², 16²
    official = _official_consistency(torch, teacher, student, (64, 32))
    for sizes in ("fixed", "per_level"):
        np.testing.assert_allclose(float(losses.consistency_loss(teacher, student, sizes)), official,
                                   rtol=1e-5)
    with pytest.raises(ValueError, match="config.model.consistency_sizes 'level'"):
        losses.consistency_loss(teacher, student, "level")


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_skimage_gaussian(data_range):
    rng = np.random.default_rng(6)
    x = rng.uniform(size=(2, 40, 33, 3)).astype(np.float32)
    y = np.clip(x + 0.15 * rng.normal(size=x.shape), 0, 1).astype(np.float32)
    y[1, :20] = x[1, :20]  # one half identical, so per-image values differ across the batch
    expected = np.mean([structural_similarity(x[i] * data_range, y[i] * data_range, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False,
                                              data_range=data_range, channel_axis=-1)
                        for i in range(len(x))])
    got = losses.ssim(jnp.asarray(x * data_range), jnp.asarray(y * data_range), data_range=data_range)
    assert abs(float(got) - expected) < 1e-4
    assert float(losses.ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_raise_clear_errors():
    teacher, student = _levels(np.random.default_rng(7))
    with pytest.raises(ValueError, match="config.model.loss"):
        losses.distillation_loss(teacher, student, "l1")
    with pytest.raises(ValueError, match="level 1"):
        losses.flattened_cosine_distance(teacher, [student[0], student[2], student[1]])
    with pytest.raises(ValueError, match="win_size"):
        losses.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
