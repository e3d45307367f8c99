"""RD4AD / SK-RD4AD models: shapes and parameter counts from docs/reference.md §1-§2.2, the init of §7,
the registry, and that a train step changes only the student."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rgpkd_jax import losses
from rgpkd_jax.models import TRAINABLE, Features, build_model, count_params
from rgpkd_jax.models.rd4ad import RD4AD


@functools.lru_cache(maxsize=None)
def _abstract(arch, **kwargs):
    """The model's structure without allocating its weights (read-only: shared between tests)."""
    return nnx.eval_shape(lambda: RD4AD(arch, rngs=nnx.Rngs(0), **kwargs))


@pytest.fixture(scope="module")
def resnet18_model():
    """A real ResNet18 RD4AD, read-only (tests that train build their own)."""
    return RD4AD("resnet18", rngs=nnx.Rngs(2))


def _num_params(module):
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(module, nnx.Param))))


# docs/reference.md §1 (teacher taps) and §2.2 (decoder outputs, paired), NHWC at 256 px.
SPEC_SHAPES_256 = {
    "wide_resnet50_2": [(64, 64, 256), (32, 32, 512), (16, 16, 1024)],
    "resnet18": [(64, 64, 64), (32, 32, 128), (16, 16, 256)],
}
SPEC_EMBEDDING_256 = {"wide_resnet50_2": (8, 8, 2048), "resnet18": (8, 8, 512)}


@pytest.mark.parametrize("skips", [False, True], ids=["rd4ad", "sk_rd4ad"])  # method subset: RD4AD's class
@pytest.mark.parametrize("arch", sorted(SPEC_SHAPES_256))
def test_shapes_at_256px_match_spec(arch, skips):
    model = _abstract(arch, skips=skips)
    images = jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32)
    features = nnx.eval_shape(lambda m, x: m(x, train=True), model, images)
    expected = [(2,) + s for s in SPEC_SHAPES_256[arch]]
    assert [f.shape for f in features.teacher] == expected
    assert [f.shape for f in features.student] == expected
    assert features.reconstruction is None
    embedding = nnx.eval_shape(lambda m, t: m.bn(t, train=False), model,
                               [jax.ShapeDtypeStruct(s, jnp.float32) for s in expected])
    assert embedding.shape == (2,) + SPEC_EMBEDDING_256[arch]


# docs/reference.md §2.2 table: OCBE used, OCBE incl. the unused conv4/bn4, decoder.
SPEC_COUNTS = {
    "wide_resnet50_2": (58_885_120, 67_277_824, 24_917_504),
    "resnet18": (11_680_000, 12_205_312, 3_703_168),
}


@pytest.mark.parametrize("arch", sorted(SPEC_COUNTS))
def test_parameter_counts_match_spec_table(arch):
    used, with_conv4, decoder = SPEC_COUNTS[arch]
    model = _abstract(arch)
    assert _num_params(model.bn) == used
    assert _num_params(model.decoder) == decoder
    assert count_params(model)["trainable"] == used + decoder
    assert _num_params(_abstract(arch, include_unused_conv4=True).bn) == with_conv4


def test_wrn50_decoder_block_counts_are_the_forward_order_quirk():
    decoder = _abstract("wide_resnet50_2").decoder
    assert [len(decoder.layer1), len(decoder.layer2), len(decoder.layer3)] == [3, 4, 6]
    assert len(_abstract("wide_resnet50_2").bn.bn_layer) == 3
    assert len(_abstract("resnet18").bn.bn_layer) == 2


def test_init_follows_pytorch(resnet18_model):
    """Convs: Kaiming normal fan_out (std sqrt(2/fan_out)); deconvs: PyTorch's default
    U(+-1/sqrt(out*4)); BN: scale 1, bias 0."""
    model = resnet18_model
    deconv = model.decoder.layer1[0].upsample[0].kernel[...]  # 512 -> 256
    bound = 1 / np.sqrt(256 * 4)
    assert np.abs(deconv).max() <= bound
    assert np.std(deconv) == pytest.approx(bound / np.sqrt(3), rel=0.02)
    conv = model.bn.bn_layer[0].conv1.kernel[...]  # 3x3, 768 -> 512
    assert np.std(conv) == pytest.approx(np.sqrt(2 / (512 * 9)), rel=0.02)
    assert np.all(model.decoder.layer2[1].bn2.scale[...] == 1)
    assert np.all(model.decoder.layer2[1].bn2.bias[...] == 0)


def _config(name, arch="resnet18", **model):
    config = importlib.import_module(f"configs.{name}").get_config("mvtec_ad/bottle,tiny")
    with config.unlocked():
        config.teacher.arch = arch
        config.model.update(model)
    return config


def test_build_model_reads_the_configs():
    rd = nnx.eval_shape(lambda: build_model(_config("rd4ad"), nnx.Rngs(0)))
    sk = nnx.eval_shape(lambda: build_model(_config("sk_rd4ad"), nnx.Rngs(0)))
    assert (rd.decoder.skips, rd.consistency_rate) == (False, 0.0)
    assert (sk.decoder.skips, sk.consistency_rate, sk.consistency_sizes) == (True, 0.05, "fixed")
    per_level = nnx.eval_shape(lambda: build_model(_config("sk_rd4ad", consistency_sizes="per_level"),
                                                   nnx.Rngs(0)))
    assert per_level.consistency_sizes == "per_level"
    conv4 = nnx.eval_shape(lambda: build_model(_config("rd4ad", include_unused_conv4=True), nnx.Rngs(0)))
    assert conv4.bn.conv4.kernel.shape == (1, 1, 1024, 512)  # 1x1, 1024e -> 512e (e = 1)
    bad = _config("rd4ad")
    with bad.unlocked():
        bad.method = "rd5ad"
    with pytest.raises(ValueError, match="config.method"):
        build_model(bad, nnx.Rngs(0))
    with pytest.raises(ValueError, match="config.model.loss"):
        build_model(_config("rd4ad", loss="l1"), nnx.Rngs(0))
    with pytest.raises(ValueError, match="config.model.consistency_sizes"):
        build_model(_config("sk_rd4ad", consistency_sizes="level"), nnx.Rngs(0))


def _images(batch=4, size=64, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


def test_skips_change_the_student_and_only_its_input(resnet18_model):
    """Same weights, skips on vs off: D1 is identical (it sees no skip), D2 and D3 differ."""
    rd = resnet18_model
    sk = RD4AD("resnet18", rngs=nnx.Rngs(2), skips=True)
    x = _images()
    out_rd, out_sk = rd(x, train=False), sk(x, train=False)
    np.testing.assert_array_equal(out_rd.student[2], out_sk.student[2])
    assert not np.allclose(out_rd.student[0], out_sk.student[0])
    assert not np.allclose(out_rd.student[1], out_sk.student[1])
    with pytest.raises(ValueError, match="teacher features"):
        sk.decoder(jnp.zeros((1, 2, 2, 512)), train=False)


@pytest.mark.parametrize("mode,rate,sizes", [("cosine", 0.0, "fixed"), ("mix", 0.05, "fixed"),
                                             ("mse", 0.005, "per_level")])
def test_loss_combines_configured_terms(resnet18_model, mode, rate, sizes):
    features = resnet18_model(_images(batch=2), train=False)
    model = _abstract("resnet18", loss=mode, consistency_rate=rate, consistency_sizes=sizes)
    total, terms = model.loss(features, None)
    expected = losses.distillation_loss(features.teacher, features.student, mode)
    if rate:
        expected += rate * losses.consistency_loss(features.teacher, features.student, sizes)
    assert set(terms) == ({"distillation", "consistency"} if rate else {"distillation"})
    np.testing.assert_allclose(float(total), float(expected), rtol=1e-6)


def test_train_step_updates_only_the_student():
    """A jitted Adam step as the trainer runs it: the teacher's parameters and BN statistics stay
    bit-identical, the student's parameters and BN statistics move, and no gradient reaches the teacher."""
    model = RD4AD("resnet18", rngs=nnx.Rngs(4), skips=True, consistency_rate=0.05)
    optimizer = nnx.Optimizer(model, optax.adam(0.005, b1=0.5, b2=0.999), wrt=TRAINABLE)
    teacher_before = jax.tree.map(np.array, nnx.state(model.teacher))
    student_before = jax.tree.map(np.array, nnx.state((model.bn, model.decoder)))

    @nnx.jit
    def step(model, optimizer, images):
        def loss_fn(model):
            return model.loss(model(images, train=True), images)
        (loss, _), grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, TRAINABLE),
                                              has_aux=True)(model)
        optimizer.update(model, grads)
        return loss, grads

    loss, grads = step(model, optimizer, _images())
    assert np.isfinite(float(loss))
    assert "teacher" not in grads and "bn" in grads and "decoder" in grads
    jax.tree.map(np.testing.assert_array_equal, teacher_before, jax.tree.map(np.array, nnx.state(model.teacher)))
    student_after = nnx.state((model.bn, model.decoder))
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), student_before, student_after)
    flat = dict(jax.tree_util.tree_leaves_with_path(changed))
    assert all(flat.values()), [jax.tree_util.keystr(k) for k, v in flat.items() if not v]


def test_features_is_the_shared_interface(resnet18_model):
    features = resnet18_model(_images(batch=1), train=False, indices=jnp.array([0]))
    assert isinstance(features, Features)
