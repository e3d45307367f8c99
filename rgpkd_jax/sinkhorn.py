"""The debiased Sinkhorn divergence between point clouds, computed as GeomLoss 0.2.6 computes
``SamplesLoss("sinkhorn", p=2, ...)`` on its dense ("tensorized") backend: RD++'s optimal-transport
loss (docs/reference.md §11.4, docs/rd_pp.md "Sinkhorn").

For uniform weights a on the N points x and b on the M points y, with the cost
C(x, y) = |x - y|^2 / 2, the divergence is

    S(x, y) = <a, f_ba - f_aa> + <b, g_ab - g_bb>

where (f_ba, g_ab), f_aa and g_bb are the dual potentials of the entropic transport problems x <-> y,
x <-> x and y <-> y. They come from GeomLoss's annealed symmetric loop, not from iterating to
convergence: the temperature eps runs down the schedule of :func:`epsilon_schedule`; each step
averages every potential with its soft-C-transform at that eps; a last extrapolation at the final
eps (blur^2) recomputes the four potentials with everything but the cost matrices held constant.
Gradients flow only through that last step and only through the cost matrix's first argument
(GeomLoss builds C(x, y) with y detached): the envelope-theorem gradient, not an unrolled loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

P = 2  # the exponent of the cost |x - y|^p / p; the only one RD++ uses


def epsilon_schedule(diameter: float, blur: float, scaling: float) -> np.ndarray:
    """GeomLoss's temperatures: diameter^p, then exp(t) for t from p log(diameter) down to (not
    including) p log(blur) in steps of p log(scaling), then blur^p."""
    steps = np.arange(P * np.log(diameter), P * np.log(blur), P * np.log(scaling))
    return np.array([diameter ** P, *np.exp(steps), blur ** P])


def halved_squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    """(B, N, M) |x_i - y_j|^2 / 2 of (B, N, D) and (B, M, D) points, expanded as GeomLoss does
    (|x|^2 - 2 x.y + |y|^2: no clamp at zero), with ``y`` held constant."""
    y = jax.lax.stop_gradient(y)
    cross = jnp.einsum("bnd,bmd->bnm", x, y, precision=jax.lax.Precision.HIGHEST)
    squared = (jnp.sum(x * x, axis=-1)[:, :, None] - 2 * cross + jnp.sum(y * y, axis=-1)[:, None, :])
    return squared / 2


def _soft_c_transform(eps, cost: jax.Array, log_weights_and_potential: jax.Array) -> jax.Array:
    """-eps log sum_j exp(h_j - C_ij / eps) for each i: (B, N, M), (B, M) -> (B, N)."""
    return -eps * jax.nn.logsumexp(log_weights_and_potential[:, None, :] - cost / eps, axis=2)


def sinkhorn_divergence(x: jax.Array, y: jax.Array, *, blur: float, diameter: float,
                        scaling: float) -> jax.Array:
    """(B,) debiased Sinkhorn divergences between the uniform clouds (B, N, D) ``x`` and (B, M, D)
    ``y`` (module docstring); GeomLoss's ``SamplesLoss("sinkhorn", p=2, blur, diameter, scaling)``
    with ``debias=True`` and no ``reach``."""
    n, m = x.shape[1], y.shape[1]
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    a_log = jnp.full(x.shape[:2], np.log(1.0 / n), dtype)
    b_log = jnp.full(y.shape[:2], np.log(1.0 / m), dtype)
    c_xy, c_yx = halved_squared_distances(x, y), halved_squared_distances(y, x)
    c_xx, c_yy = halved_squared_distances(x, x), halved_squared_distances(y, y)
    epsilons = epsilon_schedule(diameter, blur, scaling)

    held = [jax.lax.stop_gradient(c) for c in (c_xy, c_yx, c_xx, c_yy)]

    def transforms(eps, potentials, costs):
        f_ba, g_ab, f_aa, g_bb = potentials
        cost_xy, cost_yx, cost_xx, cost_yy = costs
        return (_soft_c_transform(eps, cost_xy, b_log + g_ab / eps),
                _soft_c_transform(eps, cost_yx, a_log + f_ba / eps),
                _soft_c_transform(eps, cost_xx, a_log + f_aa / eps),
                _soft_c_transform(eps, cost_yy, b_log + g_bb / eps))

    def anneal(potentials, eps):
        updated = transforms(eps, potentials, held)
        return tuple(0.5 * (old + new) for old, new in zip(potentials, updated)), None

    first = float(epsilons[0])
    start = (_soft_c_transform(first, held[0], b_log), _soft_c_transform(first, held[1], a_log),
             _soft_c_transform(first, held[2], a_log), _soft_c_transform(first, held[3], b_log))
    potentials, _ = jax.lax.scan(anneal, start, jnp.asarray(epsilons, dtype))
    f_ba, g_ab, f_aa, g_bb = transforms(float(epsilons[-1]), jax.lax.stop_gradient(potentials),
                                        (c_xy, c_yx, c_xx, c_yy))
    return jnp.sum((f_ba - f_aa) / n, axis=1) + jnp.sum((g_ab - g_bb) / m, axis=1)
