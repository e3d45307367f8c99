"""RD++'s pseudo-anomalies: 3-D OpenSimplex noise with octaves, pasted as a patch on each training
image (docs/reference.md §11.5, docs/rd_pp.md).

OpenSimplex (the 2014 algorithm RD++ takes from AnoDDPM) sums, over the vertices ``v`` of a skewed
cubic lattice, ``(2 - |p - v|^2)^4 <g(v), p - v>`` for every vertex closer than sqrt(2) to the
point ``p``, divided by 103; ``g(v)`` is one of 24 fixed gradients picked by hashing ``v`` through a
permutation table made from a seed. The official scalar code finds the (at most ten) vertices that
can be that close by a tree of branches; here every point evaluates all 64 vertices of the 4x4x4
block around its lattice cell, which contains them (tests/models/simplex_noise_test.py), and drops
those that are too far. Same sum, no branches: it vectorises and runs inside a jitted train step.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

STRETCH = -1.0 / 6.0   # (1 / sqrt(3 + 1) - 1) / 3: input space -> lattice space
SQUISH = 1.0 / 3.0     # (sqrt(3 + 1) - 1) / 3: lattice space -> input space
NORM = 103.0
RADIUS_SQUARED = 2.0
# The 24 gradients (x, y, z): directions to the vertices of a rhombicuboctahedron, skewed.
GRADIENTS = np.array([
    (-11, 4, 4), (-4, 11, 4), (-4, 4, 11), (11, 4, 4), (4, 11, 4), (4, 4, 11),
    (-11, -4, 4), (-4, -11, 4), (-4, -4, 11), (11, -4, 4), (4, -11, 4), (4, -4, 11),
    (-11, 4, -4), (-4, 11, -4), (-4, 4, -11), (11, 4, -4), (4, 11, -4), (4, 4, -11),
    (-11, -4, -4), (-4, -11, -4), (-4, -4, -11), (11, -4, -4), (4, -11, -4), (4, -4, -11),
], dtype=np.float64)
# Lattice offsets from a point's cell origin that every evaluation visits.
NEIGHBOURHOOD = np.array(list(itertools.product(range(-1, 3), repeat=3)), dtype=np.int32)

_LCG_MULTIPLIER = 6364136223846793005
_LCG_INCREMENT = 1442695040888963407
_UINT64 = 1 << 64


def _lcg(state: int) -> int:
    """One step of OpenSimplex's 64-bit linear congruential generator, wrapped as a signed int64."""
    state = (state * _LCG_MULTIPLIER + _LCG_INCREMENT) % _UINT64
    return state - _UINT64 if state >= _UINT64 // 2 else state


def permutation_table(seed: int) -> np.ndarray:
    """OpenSimplex's 256-entry permutation for ``seed``: three warm-up steps of the generator, then
    a Fisher-Yates shuffle of 0..255 from the last element down, slot ``i`` drawing ``(state + 31)
    mod (i + 1)``."""
    state = seed
    for _ in range(3):
        state = _lcg(state)
    source = list(range(256))
    table = np.zeros(256, dtype=np.int32)
    for i in range(255, -1, -1):
        state = _lcg(state)
        r = (state + 31) % (i + 1)
        table[i] = source[r]
        source[r] = source[i]
    return table


def noise3(x: jax.Array, y: jax.Array, z: jax.Array, perm: jax.Array) -> jax.Array:
    """OpenSimplex noise at the points (x, y, z) (broadcast together), in [-1, 1]; ``perm`` is
    :func:`permutation_table`'s."""
    x, y, z = jnp.broadcast_arrays(*(jnp.asarray(c)[..., None] for c in (x, y, z)))
    stretch = (x + y + z) * STRETCH
    cell = [jnp.floor(c + stretch).astype(jnp.int32) for c in (x, y, z)]
    vx, vy, vz = (c + jnp.asarray(NEIGHBOURHOOD[:, axis]) for axis, c in enumerate(cell))
    squish = (vx + vy + vz).astype(x.dtype) * SQUISH
    dx, dy, dz = x - (vx + squish), y - (vy + squish), z - (vz + squish)
    attenuation = RADIUS_SQUARED - dx * dx - dy * dy - dz * dz
    gradient = jnp.asarray(GRADIENTS, x.dtype)[perm[(perm[(perm[vx & 255] + vy) & 255] + vz) & 255] % 24]
    slope = gradient[..., 0] * dx + gradient[..., 1] * dy + gradient[..., 2] * dz
    contribution = jnp.where(attenuation > 0, jnp.square(jnp.square(attenuation)) * slope, 0.0)
    return jnp.sum(contribution, axis=-1) / NORM


def octave_noise(shape: tuple[int, int, int], perm: jax.Array, *, octaves: int = 6,
                 persistence: float = 0.6, frequency: float = 32.0, dtype=jnp.float32) -> jax.Array:
    """(C, H, W) fractal noise: the sum over ``octaves`` of ``persistence^o`` times the noise at
    (column, row, channel) / (``frequency`` / 2^o). RD++ calls it with 6 octaves, persistence 0.6
    and AnoDDPM's default frequency 32."""
    channels, rows, columns = shape
    z = jnp.arange(channels, dtype=dtype)[:, None, None]
    y = jnp.arange(rows, dtype=dtype)[None, :, None]
    x = jnp.arange(columns, dtype=dtype)[None, None, :]
    total = jnp.zeros(shape, dtype)
    for octave in range(octaves):
        scale = frequency / 2 ** octave
        total = total + persistence ** octave * noise3(x / scale, y / scale, z / scale, perm)
    return total


@dataclasses.dataclass(frozen=True)
class PatchGeometry:
    """Where the noise patch may fall. The official code (256 px) draws its height and width in
    [10, 31] and its top-left corner in [1, 255 - side] on each axis; other sizes scale the
    bounds
    (docs/rd_pp.md)."""

    image_size: int
    min_side: int
    max_side: int

    @classmethod
    def for_image_size(cls, image_size: int) -> "PatchGeometry":
        max_side = image_size // 8 - 1
        min_side = max(1, round(10 * image_size / 256))
        if max_side < min_side:
            raise ValueError(f"RD++'s noise patches need dataset.image_size >= 16, got {image_size}")
        return cls(image_size, min_side, max_side)

    def draw(self, key: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
        """(B, 2) sizes (height, width) and (B, 2) top-left corners of ``batch`` patches."""
        size_key, corner_key = jax.random.split(key)
        sizes = jax.random.randint(size_key, (batch, 2), self.min_side, self.max_side + 1)
        corners = jax.random.randint(corner_key, (batch, 2), 1, self.image_size - sizes)
        return sizes, corners


def paste_patches(field: jax.Array, sizes: jax.Array, corners: jax.Array, image_size: int) -> jax.Array:
    """(B, S, S, C) images that are zero but for ``field[:, :h, :w]`` (field: (C, H, W), the largest
    patch) placed with its top-left corner at each sample's ``corners``; what the official code
    pastes for a patch of that size, whose noise is the top-left crop of the same field."""
    position = jnp.arange(image_size)
    offset = position[None, :, None] - corners[:, None, :]               # (B, S, 2)
    inside = (offset >= 0) & (offset < sizes[:, None, :])
    rows = jnp.clip(offset[..., 0], 0, field.shape[1] - 1)               # (B, S)
    columns = jnp.clip(offset[..., 1], 0, field.shape[2] - 1)
    values = field[:, rows[:, :, None], columns[:, None, :]]             # (C, B, S, S)
    mask = inside[:, :, None, 0] & inside[:, None, :, 1]                 # (B, S, S)
    return jnp.where(mask[..., None], jnp.moveaxis(values, 0, -1), 0.0)
