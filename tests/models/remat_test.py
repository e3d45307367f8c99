"""`config.model.remat=decoder`: the decoder blocks are recomputed in the backward pass
(`rgpkd_jax/models/remat.py`), with the same loss, gradients and BN statistics as without.

Compared in float64, where recomputing the same operations in another program can change a sum's
order only: each of the ~40 layers between input and loss rounds by at most n u (n <= 4608 terms,
u = 1.1e-16), about 5e-13 per layer, 2e-11 over the network in the worst case. Asserted: 1e-10 of
each leaf's largest magnitude, and for gradients at least of SCALE_FLOOR x the model's largest
gradient: a gradient that is zero up to rounding (RD++'s projection biases feed an instance norm)
has only rounding noise as its own scale.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax.models import TRAINABLE, build_model
from rgpkd_jax.preflight import check_config_values
from rgpkd_jax.config_files import ConfigError
from tests.helpers import METHODS, prepare_on, tiny_config, training_loss

FLOAT64_RELATIVE = 1e-10
SCALE_FLOOR = 1e-3


def _loss_gradients_and_stats(config, images):
    """(loss, gradients, BN statistics after the step, jaxpr of the step) of the training forward
    and backward as the train step computes them (`rgpkd_jax.train.make_train_step`), in float64."""
    model = build_model(config, nnx.Rngs(0))
    indices = prepare_on(model, images)
    graphdef, state = nnx.split(model)

    def step(state):
        model = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(lambda m: training_loss(m, images, indices)[0],
                                         argnums=nnx.DiffState(0, TRAINABLE))(model)
        return loss, grads, nnx.state(model, nnx.BatchStat)

    return *jax.jit(step)(state), jax.make_jaxpr(step)(state)


# SK-RD4AD runs the same `Decoder.run_blocks` as RD4AD (its skips add between stages).
@pytest.mark.parametrize("method", METHODS)
def test_remat_decoder_gives_the_same_loss_gradients_and_statistics(tmp_path, method):
    images = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    results = {}
    with jax.enable_x64(True):
        for remat in ("none", "decoder"):
            config = tiny_config(method, data_dir=tmp_path)
            config.model.compute_dtype = "float64"
            config.model.remat = remat
            results[remat] = _loss_gradients_and_stats(config, images.astype(np.float64))
    (loss, grads, stats, plain), (loss_r, grads_r, stats_r, remat) = results["none"], results["decoder"]
    # The remat program recomputes: its jaxpr holds checkpointed calls, the plain one none.
    assert "checkpoint" in str(remat) or "remat" in str(remat)
    assert "checkpoint" not in str(plain) and "remat" not in str(plain)
    assert abs(float(loss) - float(loss_r)) <= FLOAT64_RELATIVE * abs(float(loss))
    gradient_floor = SCALE_FLOOR * max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
    for tree, tree_r, floor in ((grads, grads_r, gradient_floor), (stats, stats_r, 1e-300)):
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(tree_r)):
            a, b = np.asarray(a), np.asarray(b)
            np.testing.assert_allclose(b, a, rtol=0, atol=FLOAT64_RELATIVE * max(np.abs(a).max(), floor),
                                       err_msg=jax.tree_util.keystr(path))


def test_unknown_remat_is_a_config_error(tmp_path):
    config = tiny_config("rd4ad", data_dir=tmp_path)
    config.model.remat = "all"
    with pytest.raises(ConfigError, match=r"model.remat='all' is not one of \('none', 'decoder'\)"):
        check_config_values(config)
