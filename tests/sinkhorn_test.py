"""The Sinkhorn divergence (rgpkd_jax/sinkhorn.py) against GeomLoss 0.2.6's SamplesLoss("sinkhorn"),
the library the official RD++ code calls: values and gradients w.r.t. both clouds, in float64, for
RD++'s arguments and for others that exercise a short schedule and a large blur. Both run the same
finite annealed loop, so they agree to rounding: sums over tens of points, ~1e-16 relative each;
1e-10 relative leaves room for the few hundred iterations and catches any change of the loop (a
converged solver differs from it by 1e-3 to 1e-2 relative, docs/rd_pp.md "Sinkhorn")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgpkd_jax import sinkhorn
from tests.helpers import import_oracle

torch = import_oracle("torch")
geomloss = import_oracle("geomloss")

RTOL = 1e-10


@pytest.mark.parametrize("blur,diameter,scaling,spread", [
    (0.05, 1e7, 0.95, 0.3),   # RD++'s SamplesLoss arguments
    (0.05, 3.0, 0.5, 0.3),
    (0.5, 10.0, 0.9, 1.0),
])
def test_matches_geomloss_values_and_gradients(blur, diameter, scaling, spread):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)) * spread
    y = rng.normal(size=(9, 5)) * spread + 0.2
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, diameter=diameter, scaling=scaling, debias=True)
    tx, ty = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    expected = loss(tx, ty)
    expected.backward()
    with jax.enable_x64(True):
        value, (gx, gy) = jax.value_and_grad(
            lambda a, b: sinkhorn.sinkhorn_divergence(a[None], b[None], blur=blur, diameter=diameter,
                                                      scaling=scaling)[0], argnums=(0, 1))(jnp.asarray(x), jnp.asarray(y))
    assert expected.item() > 0.01
    assert abs(float(value) - expected.item()) < RTOL * expected.item()
    for ours, theirs in ((gx, tx.grad), (gy, ty.grad)):
        theirs = theirs.numpy()
        assert np.abs(np.asarray(ours) - theirs).max() < RTOL * np.abs(theirs).max()


def test_epsilon_schedule_is_geomloss_s():
    from geomloss.sinkhorn_divergence import epsilon_schedule
    for args in ((1e7, 0.05, 0.95), (3.0, 0.05, 0.5)):
        np.testing.assert_allclose(sinkhorn.epsilon_schedule(*args), epsilon_schedule(2, *args), rtol=1e-15)
    assert len(sinkhorn.epsilon_schedule(1e7, 0.05, 0.95)) == 375
