"""`config.model.compute_dtype`: "bfloat16", a numerical sanity check on CPU (speed is for GPU/TPU),
and "float64", which must compute everything in float64.

bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation), so features through the
teacher and student differ from float32 by about a percent. The tolerances below are stated per check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax import evaluate, metric_writer, model_setup, train
from rgpkd_jax.metrics import summary
from rgpkd_jax.models import build_model, set_compute_dtype
from tests.helpers import METHODS, prepare_on, tiny_config

METRIC_TOLERANCE = 0.01   # image/pixel AUROC and AU-PRO of one model evaluated in each dtype
MAP_CORRELATION = 0.99    # Pearson correlation of its anomaly maps in the two dtypes
LOSS_CURVE_RELATIVE = 0.05  # per logged step, bfloat16 training against float32
FEATURE_COSINE = 0.99     # per-pixel cosine between bfloat16 and float32 features, worst pixel
LOSS_RELATIVE = 0.02
# float32 against float64 (exact by comparison): float32 rounds by u = 2^-24 = 6e-8 per operation.
# A conv sums n <= 9 x 512 = 4608 products; its rounding error is at most n u = 3e-4 (worst case)
# and typically sqrt(n) u = 4e-6 of the sum, and the RD4AD student features pass through about 40
# such layers (teacher, OCBE, decoder): typically sqrt(40) x 4e-6 = 2.5e-5. Asserted: 1e-4 of each
# level's largest value (measured 6.4e-6); the loss averages them, 1e-5 relative (measured 6e-8).
FLOAT32_FEATURES = 1e-4
FLOAT32_LOSS = 1e-5


def _pair(method, data_dir):
    """The same initialised model twice: computing in float32 and in bfloat16."""
    config = tiny_config(method, data_dir=data_dir)
    model = build_model(config, nnx.Rngs(0))
    low = nnx.clone(model)
    set_compute_dtype(low, "bfloat16")
    return config, model, low


@pytest.mark.parametrize("method", METHODS)
def test_bfloat16_features_and_loss_are_close_to_float32(method, tmp_path):
    config, model, low = _pair(method, tmp_path)
    images = jax.random.normal(jax.random.key(0), (4, 64, 64, 3))
    indices = jnp.arange(4)
    for m in (model, low):  # a bank of other images (RGPKD): retrieval must not find the image itself
        prepare_on(m, np.asarray(jax.random.normal(jax.random.key(1), (4, 64, 64, 3))))
    full = model(images, train=False, indices=indices)
    half = low(images, train=False, indices=indices)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(half)):
        assert b.dtype == jnp.float32  # losses and maps never see bfloat16
        cosine = jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + 1e-12)
        assert float(cosine.min()) > FEATURE_COSINE
        assert not np.array_equal(np.asarray(a), np.asarray(b))  # bfloat16 really was used
    loss_full, _ = model.loss(full, images)
    loss_half, _ = low.loss(half, images)
    assert abs(float(loss_half) - float(loss_full)) <= LOSS_RELATIVE * abs(float(loss_full))


def test_parameters_and_gradients_stay_float32(tmp_path):
    _, _, low = _pair("rd4ad", tmp_path)
    images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    grads = nnx.grad(lambda m: m.loss(m(images, train=True), images)[0])(low)
    for leaf in jax.tree.leaves(nnx.state(low, nnx.Param)) + jax.tree.leaves(grads):
        assert leaf.dtype == jnp.float32


def test_unknown_compute_dtype_is_a_clear_error(tmp_path):
    config = tiny_config("rd4ad", data_dir=tmp_path)
    config.model.compute_dtype = "float16"
    with pytest.raises(ValueError, match="compute_dtype 'float16'.*float32.*bfloat16"):
        build_model(config, nnx.Rngs(0))


def test_bfloat16_training_and_evaluation_within_tolerance_of_float32(tmp_path, synthetic_data_dir):
    """Two epochs of the tiny RD4AD on the embedded data, once per dtype, same seed and data:
    the loss curves agree within 5 %; the float32-trained model evaluated in bfloat16 gives
    image and pixel AUROC within METRIC_TOLERANCE of its float32 evaluation.

    Metrics of the two trained models are not compared: with the random teacher the tests use,
    the detector is at chance level and its AUROC moves by several points with any perturbation
    of training (measured: 0.05 pixel AUROC between the dtypes), which says nothing about bfloat16.
    """
    losses = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=2)
        config.model.compute_dtype = dtype
        train.train_and_evaluate(config, str(tmp_path / dtype), evaluate_after=False)
        losses[dtype] = [r["loss"] for r in metric_writer.read_metrics(str(tmp_path / dtype)) if "loss" in r]
    assert len(losses["bfloat16"]) == len(losses["float32"]) > 1
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=LOSS_CURVE_RELATIVE)

    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, epochs=2)
    model, _, _ = model_setup.load_trained_model(config, str(tmp_path / "float32"))
    metrics = {}
    for dtype in ("float32", "bfloat16"):
        set_compute_dtype(model, dtype)
        p = evaluate.collect_test_predictions(model, config)
        metrics[dtype] = summary.compute_metrics(p["map"], p["mask"], p["label"], scores=p["score"],
                                                 per_image_aupro=False)
        metrics[dtype]["maps"] = p["map"]
    full, half = metrics["float32"], metrics["bfloat16"]
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert abs(half[key] - full[key]) <= METRIC_TOLERANCE, (key, half[key], full[key])
    assert np.corrcoef(half["maps"].ravel(), full["maps"].ravel())[0, 1] > MAP_CORRELATION


def test_float64_needs_64_bit_jax(tmp_path):
    config = tiny_config("rd4ad", data_dir=tmp_path)
    config.model.compute_dtype = "float64"
    assert not jax.config.jax_enable_x64
    with pytest.raises(ValueError, match="compute_dtype 'float64' needs 64-bit JAX.*jax_enable_x64"):
        build_model(config, nnx.Rngs(0))


def _float_dtypes(jaxpr, found=None) -> dict[str, set[str]]:
    """Floating dtype -> the primitives producing values of it, through every nested jaxpr."""
    found = {} if found is None else found
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            if jnp.issubdtype(getattr(var.aval, "dtype", jnp.int32), jnp.floating):
                found.setdefault(str(var.aval.dtype), set()).add(str(eqn.primitive))
        for param in eqn.params.values():
            for p in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(p, "jaxpr", p)
                if hasattr(inner, "eqns"):
                    _float_dtypes(inner, found)
    return found


def test_float64_model_computes_everything_in_float64(tmp_path):
    """A tiny RD4AD in float64: parameters, BN statistics and every value that its training
    forward, loss and gradient produce are float64 (the float32 images are converted at the first
    conv); features and loss match the float32 model within float32 rounding."""
    config = tiny_config("rd4ad", data_dir=tmp_path)
    images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))  # float32, as the pipeline gives
    single = build_model(config, nnx.Rngs(0))
    expected = single(images, train=True)
    expected_loss, _ = single.loss(expected, images)

    config.model.compute_dtype = "float64"
    with jax.enable_x64(True):
        model = build_model(config, nnx.Rngs(0))
        state_dtypes = {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model))}
        graphdef, state = nnx.split(model)

        def forward_and_loss(state, images):
            model = nnx.merge(graphdef, state)
            features = model(images, train=True)
            return model.loss(features, images)[0], features

        gradient = jax.grad(lambda s, x: forward_and_loss(s, x)[0])
        produced = _float_dtypes(jax.make_jaxpr(gradient)(state, images).jaxpr)
        loss, features = jax.jit(forward_and_loss)(state, images)
    assert state_dtypes == {np.dtype(np.float64)}
    assert set(produced) == {"float64"}, {k: sorted(v) for k, v in produced.items()}
    assert loss.dtype == jnp.float64
    assert all(f.dtype == jnp.float64 for f in jax.tree.leaves(features))
    for a, b in zip(jax.tree.leaves(features), jax.tree.leaves(expected)):
        scale = float(np.abs(np.asarray(a)).max())
        np.testing.assert_allclose(np.asarray(b, np.float64), np.asarray(a), rtol=0,
                                   atol=FLOAT32_FEATURES * scale)
    assert abs(float(expected_loss) - float(loss)) <= FLOAT32_LOSS * abs(float(loss))
