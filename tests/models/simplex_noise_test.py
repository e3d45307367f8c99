"""RD++'s simplex noise (rgpkd_jax/models/simplex_noise.py) against references written here from the
published description of OpenSimplex (docs/reference.md §11.5): the permutation table from an
independent 64-bit implementation of its generator, and the noise as the plain scalar sum over
every lattice vertex of a wide block around the point, in float64. Also the patch placement's
distribution and the pasting, against the official procedure written as numpy slicing.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax.deploy.images import IMAGENET_STD
from rgpkd_jax.models import simplex_noise
from rgpkd_jax.models.rd_pp import RDPlusPlus

SKEW, UNSKEW, NORM = -1.0 / 6.0, 1.0 / 3.0, 103.0


def reference_table(seed: int) -> np.ndarray:
    """OpenSimplex's table with numpy's wrapping uint64 arithmetic: state <- state * 6364136223846793005
    + 1442695040888963407 three times, then for i = 255..0 one more step and r = (signed state + 31)
    mod (i + 1), table[i] = source[r], source[r] = source[i]."""
    with np.errstate(over="ignore"):
        state = np.uint64(seed % 2 ** 64)
        step = lambda s: s * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)  # noqa: E731
        for _ in range(3):
            state = step(state)
        source, table = list(range(256)), [0] * 256
        for i in range(255, -1, -1):
            state = step(state)
            r = (int(state.astype(np.int64)) + 31) % (i + 1)
            table[i], source[r] = source[r], source[i]
    return np.array(table)


def reference_noise(x: float, y: float, z: float, table: np.ndarray) -> float:
    """The definition, point by point: the skewed lattice vertices v within radius sqrt(2) of the
    point, searched in a 8x8x8 block (twice the implementation's), each adding (2 - d.d)^4 (g.d) with
    d = point - unskewed(v) and g the gradient hashed from v; divided by 103."""
    skew = (x + y + z) * SKEW
    base = [math.floor(c + skew) for c in (x, y, z)]
    value = 0.0
    for offset in itertools.product(range(-3, 5), repeat=3):
        i, j, k = (b + o for b, o in zip(base, offset))
        unskew = (i + j + k) * UNSKEW
        d = (x - (i + unskew), y - (j + unskew), z - (k + unskew))
        attenuation = 2.0 - sum(c * c for c in d)
        if attenuation > 0:
            g = simplex_noise.GRADIENTS[table[(table[(table[i % 256] + j) % 256] + k) % 256] % 24]
            value += attenuation ** 4 * float(np.dot(g, d))
    return value / NORM


@pytest.mark.parametrize("seed", [0, 3, -987654321, 7777777777, 2 ** 63 - 1])
def test_permutation_table_matches_the_generator(seed):
    table = simplex_noise.permutation_table(seed)
    np.testing.assert_array_equal(table, reference_table(seed))
    assert sorted(table) == list(range(256))


def test_noise_equals_the_sum_over_all_contributing_vertices():
    table = simplex_noise.permutation_table(424242)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-5, 40, size=(300, 3)),            # anywhere
                             np.stack(np.meshgrid(np.arange(0, 6, 0.5), np.arange(0, 4), np.arange(3)),
                                      -1).reshape(-1, 3)])                    # on the lattice's planes
    with jax.enable_x64(True):
        ours = np.asarray(simplex_noise.noise3(*(jnp.asarray(points[:, a]) for a in range(3)), jnp.asarray(table)))
    expected = np.array([reference_noise(*p, table) for p in points])
    assert np.abs(expected).max() > 0.3  # not trivially zero
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-13)


def test_octave_noise_layout_and_octaves():
    """(C, H, W) with x = column, y = row, z = channel; octave o at frequency 32 / 2^o, weight 0.6^o."""
    table = simplex_noise.permutation_table(11)
    with jax.enable_x64(True):
        field = np.asarray(simplex_noise.octave_noise((3, 9, 7), jnp.asarray(table), octaves=6,
                                                      persistence=0.6, dtype=jnp.float64))
    assert field.shape == (3, 9, 7)
    for c, r, col in [(0, 0, 0), (2, 8, 6), (1, 3, 5), (2, 0, 4)]:
        expected = sum(0.6 ** o * reference_noise(col * 2 ** o / 32, r * 2 ** o / 32, c * 2 ** o / 32, table)
                       for o in range(6))
        assert abs(field[c, r, col] - expected) < 1e-13


def test_patch_sizes_and_corners_follow_the_official_distribution():
    """256 px: sides uniform on 10..31, corners uniform on 1..255 - side, all independent."""
    geometry = simplex_noise.PatchGeometry.for_image_size(256)
    draws = 20000
    sizes, corners = (np.asarray(a) for a in geometry.draw(jax.random.key(0), draws))
    assert sizes.min() == 10 and sizes.max() == 31
    assert corners.min() == 1 and np.all(corners <= 255 - sizes)
    assert np.any(corners == 255 - sizes)
    # means within 5 standard errors: side U{10..31}: 20.5, sd 6.34; corner | side: (256 - side) / 2
    assert abs(sizes.mean() - 20.5) < 5 * 6.34 / math.sqrt(draws * 2)
    offsets = corners - (256 - sizes) / 2
    assert abs(offsets.mean()) < 5 * (256 / math.sqrt(12)) / math.sqrt(draws * 2)
    assert abs(np.corrcoef(sizes[:, 0], sizes[:, 1])[0, 1]) < 5 / math.sqrt(draws)
    # other sizes: bounds scale with the image, below an eighth of it
    small = simplex_noise.PatchGeometry.for_image_size(64)
    assert (small.min_side, small.max_side) == (2, 7)
    with pytest.raises(ValueError, match="image_size >= 16"):
        simplex_noise.PatchGeometry.for_image_size(8)


def test_pasted_patches_are_the_official_slices():
    rng = np.random.default_rng(1)
    field = rng.normal(size=(3, 7, 7))
    sizes = np.array([[2, 7], [5, 3], [7, 7]])
    corners = np.array([[1, 1], [30, 2], [40, 56]])
    ours = np.asarray(simplex_noise.paste_patches(jnp.asarray(field, jnp.float32), jnp.asarray(sizes),
                                                  jnp.asarray(corners), 64))
    for b, ((h, w), (top, left)) in enumerate(zip(sizes, corners)):
        expected = np.zeros((64, 64, 3))
        expected[top:top + h, left:left + w, :] = field[:, :h, :w].transpose(1, 2, 0)
        np.testing.assert_allclose(ours[b], expected, rtol=0, atol=1e-6)


def test_pseudo_anomalies_add_noise_in_pixel_units_inside_the_patch_only():
    model = nnx.eval_shape(lambda: RDPlusPlus("resnet18", rngs=nnx.Rngs(0), noise_seed=5))  # noise needs no weights
    images = jnp.asarray(np.random.default_rng(2).normal(size=(4, 64, 64, 3)), jnp.float32)
    key = jax.random.key(9)
    noisy, _ = model.training_inputs(images, key)
    noise_key, _ = jax.random.split(key)
    geometry = simplex_noise.PatchGeometry.for_image_size(64)
    sizes, corners = geometry.draw(noise_key, 4)
    field = simplex_noise.octave_noise((3, 7, 7), jnp.asarray(model.noise_permutation), octaves=6, persistence=0.6)
    patch = np.asarray(simplex_noise.paste_patches(field, sizes, corners, 64))
    expected = np.asarray(images) + 0.2 * patch / IMAGENET_STD
    np.testing.assert_allclose(np.asarray(noisy), expected, rtol=0, atol=1e-5)
    inside = np.any(patch != 0, axis=-1)
    assert inside.any() and np.array_equal(np.asarray(noisy)[~inside], np.asarray(images)[~inside])
    again, _ = model.training_inputs(images, key)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(noisy))
