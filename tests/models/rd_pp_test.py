"""RD++ as a plugin of the method protocol: configs/rd_pp.py builds it through the registry, the
trainer's jitted step trains it, a resumed step draws the same noise, and the micro-batches add up
as the official gradient accumulation does (docs/rd_pp.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rgpkd_jax import train, train_state
from rgpkd_jax.config_files import load_config
from rgpkd_jax.models import build_model, count_params, registry
from rgpkd_jax.models.rd4ad import RD4AD
from rgpkd_jax.models.rd_pp import RDPlusPlus

ENTRY = registry.MethodEntry("rd_pp", "rgpkd_jax.models.rd_pp:RDPlusPlus", "RD++", "Tien et al., CVPR 2023")


@pytest.fixture
def registered(monkeypatch):
    """The registry line the method's integration adds (harmless once it is there)."""
    monkeypatch.setitem(registry.REGISTRY, "rd_pp", ENTRY)


def _config(*overrides):
    return load_config("configs/rd_pp.py:synthetic/grid,tiny", ["dataset.image_size=32", "train.batch_size=2",
                                                                  "model.micro_batches=1", *overrides])


def test_official_recipe_in_the_config(registered):
    config = load_config("configs/rd_pp.py:mvtec_ad/carpet")
    assert (config.train.epochs, config.train.batch_size, config.model.micro_batches) == (10, 32, 2)
    assert config.train.learning_rate * config.model.proj_lr_ratio == pytest.approx(0.001)
    assert (config.train.learning_rate, config.train.b1, config.train.b2) == (0.005, 0.5, 0.999)
    assert load_config("configs/rd_pp.py:mvtec_ad/capsule").train.epochs == 300
    with pytest.raises(ValueError, match="batch_size=3 must be a multiple of config.model.micro_batches=2"):
        build_model(load_config("configs/rd_pp.py:synthetic/grid,tiny", ["train.batch_size=3"]), nnx.Rngs(0))


def test_wrn50_projection_shapes_and_parameters():
    """At 256 px the projection keeps each WRN50 level's shape; its convs halve, quarter and restore
    the channels (docs/reference.md §11.2)."""
    shapes = [(1, 64, 64, 256), (1, 32, 32, 512), (1, 16, 16, 1024)]
    out = nnx.eval_shape(lambda: RDPlusPlus("wide_resnet50_2", rngs=nnx.Rngs(0)).proj([jnp.zeros(s) for s in shapes]))
    assert [o.shape for o in out] == shapes
    model = nnx.eval_shape(lambda: RDPlusPlus("wide_resnet50_2", rngs=nnx.Rngs(0)))
    proj_params = sum(9 * i * o + o for c in (256, 512, 1024)
                      for i, o in zip((c, c // 2, c // 4, c // 2), (c // 2, c // 4, c // 2, c)))
    rd4ad_student = count_params(nnx.eval_shape(lambda: RD4AD("wide_resnet50_2", rngs=nnx.Rngs(0))))
    assert count_params(model)["trainable"] == rd4ad_student["trainable"] + proj_params


def test_train_step_runs_and_a_resumed_step_draws_the_same_noise(registered):
    config = _config()
    model = build_model(config, nnx.Rngs(0))
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    batch = {"image": jnp.asarray(images), "index": jnp.arange(2)}
    graphdef, state, frozen = train_state.split(model, config.train, optax.constant_schedule(1e-3))
    step = train.make_train_step(graphdef, seed=config.seed)
    kernel = ("model", "proj", "proj_a", "proj", 0, "kernel")
    initial = np.array(dict(nnx.to_flat_state(state))[kernel].get_value())
    copy = jax.tree.map(jnp.copy, state)  # the step donates its state
    state, first = step(state, frozen, batch)
    _, resumed = step(copy, frozen, batch)  # the same seed and step: the same draws, bit for bit
    for name in ("loss", "reconstruction", "contrast", "distillation"):
        assert np.isfinite(float(first[name])) and float(first[name]) == float(resumed[name]), name
    assert not np.array_equal(np.asarray(dict(nnx.to_flat_state(state))[kernel].get_value()), initial)
    # the step's key is the seed's folded with the step count (train.make_train_step): step 1 draws
    # other patches than step 0
    keys = [jax.random.fold_in(jax.random.key(config.seed), n) for n in (0, 1)]
    draws = [np.asarray(model.training_inputs(batch["image"], k)[0]) for k in keys]
    assert not np.array_equal(draws[0], draws[1])


def test_micro_batches_sum_their_objectives(registered):
    """training_loss = the objectives of the batch's parts, each with its own key's draws, added."""
    model = build_model(_config("model.micro_batches=2", "train.batch_size=4"), nnx.Rngs(0))
    images = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 32, 3)), jnp.float32)
    rng = jax.random.key(4)
    expected, parts = 0.0, []
    for part, key in enumerate(jax.random.split(rng, 2)):
        chunk = images[2 * part:2 * part + 2]
        total, terms = nnx.clone(model).objective(chunk, *model.training_inputs(chunk, key))
        expected += float(total)
        parts.append(terms)
    total, terms = nnx.clone(model).training_loss({"image": images}, rng=rng)
    assert abs(float(total) - expected) < 1e-5 * abs(expected)
    assert abs(float(terms["contrast"]) - (float(parts[0]["contrast"]) + float(parts[1]["contrast"])) / 2) < 1e-6
