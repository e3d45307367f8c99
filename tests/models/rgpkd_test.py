"""RGPKD (our interpretation, docs/rgpkd.md): shapes, frozen teacher, retrieval, switches, bank bound,
both students (its own encoder, the default; the teacher as encoder side), the map's reconstruction term.

Real computation runs at 64 px with a 4-wide student; the 256 px shapes come from ``jax.eval_shape``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rgpkd_jax.models import FROZEN, TRAINABLE, Features
from rgpkd_jax.models.prompt import CrossAttentionFusion, PromptBank, bank_bytes_per_image
from rgpkd_jax.models.rgpkd import RGPKD

SIZE = 64
NUM_IMAGES = 8
DATASET_INDICES = np.arange(10, 10 + NUM_IMAGES, dtype=np.int32)  # not bank positions, on purpose
CHANNELS = (64, 128, 256)  # ResNet18 layer1..3 (docs/reference.md §1)


def tiny(**switches) -> RGPKD:
    """A 4-wide student. The 'rbg' key compiles each initialiser shape about 5x faster than the
    default threefry on CPU, which is most of this file's run time otherwise."""
    return RGPKD("resnet18", rngs=nnx.Rngs(jax.random.key(0, impl="rbg")), base_width=4, **switches)


def training_images() -> np.ndarray:
    """Images that differ in colour and in a low-frequency pattern, so their pooled teacher
    features are told apart."""
    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(np.linspace(-1, 1, SIZE), np.linspace(-1, 1, SIZE), indexing="ij")
    freq = rng.uniform(1, 6, size=(NUM_IMAGES, 1, 1, 3))
    phase = rng.uniform(0, np.pi, size=(NUM_IMAGES, 1, 1, 3))
    pattern = np.sin(freq * (xx + yy)[None, ..., None] * np.pi + phase)
    colour = rng.normal(size=(NUM_IMAGES, 1, 1, 3))
    return (pattern + colour + 0.3 * rng.normal(size=pattern.shape)).astype(np.float32)


def bank_batches(images: np.ndarray):
    return [{"image": images[:4], "index": DATASET_INDICES[:4]},
            {"image": images[4:], "index": DATASET_INDICES[4:]}]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return training_images()


@pytest.fixture(scope="module")
def teacher_features(images) -> list[np.ndarray]:
    """F1..F3 of the training images; every ``tiny`` model has this same teacher (built first
    from the same seed)."""
    features = nnx.jit(lambda m, x: m.teacher_features(x))(tiny(prompts=False), jnp.asarray(images))
    return [np.asarray(f) for f in features]


def traced(model: RGPKD, images, **kwargs):
    """Traces a forward pass without compiling it: errors raised while tracing surface cheaply."""
    return nnx.eval_shape(lambda m, x: m(x, **kwargs), model, jnp.asarray(images))


def host_copy(state: nnx.State) -> dict:
    return jax.tree.map(np.array, nnx.to_pure_dict(state))


def flat(tree: dict) -> dict:
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("switches", [{}, dict(prompts=False, reconstruction=False, skips=False),
                                      dict(student_encoder="own"),
                                      dict(student_encoder="own", prompts=False, reconstruction=False, skips=False)])
def test_every_level_has_the_teacher_shape_at_256px(switches):
    def forward():
        model = RGPKD("resnet18", rngs=nnx.Rngs(0), **switches)  # default width
        if model.prompts is not None:
            model.prompts.set([jnp.zeros((3, 256 // s, 256 // s, c)) for s, c in zip((4, 8, 16), CHANNELS)],
                              np.arange(3))
        images = jnp.zeros((2, 256, 256, 3))
        features = model(images, train=True, indices=jnp.arange(2) + 100)
        return features, model.loss(features, images)

    features, (loss, _) = jax.eval_shape(forward)
    expected = [(2, 64, 64, 64), (2, 32, 32, 128), (2, 16, 16, 256)]  # docs/reference.md §1, ResNet18
    assert [f.shape for f in features.teacher] == expected
    assert [f.shape for f in features.student] == expected
    if switches.get("reconstruction", True):
        assert features.reconstruction.shape == (2, 256, 256, 3)
    else:
        assert features.reconstruction is None
    assert loss.shape == ()


@pytest.mark.parametrize("student_encoder", ["own", "teacher"])
def test_train_step_changes_only_the_student(images, student_encoder):
    model = tiny(top_k=2, student_encoder=student_encoder)
    model.prepare(lambda: bank_batches(images))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=TRAINABLE)
    before = flat(host_copy(nnx.state(model)))
    batch, indices = jnp.asarray(images[:4]), jnp.asarray(DATASET_INDICES[:4])

    def loss_fn(model):
        features = model(batch, train=True, indices=indices)
        return model.loss(features, batch)

    @nnx.jit
    def step(model, optimizer):
        # What the gradient w.r.t. the teacher would be (zero if its features are stop_gradient-ed);
        # computed before the update, never applied.
        frozen_grads = nnx.grad(lambda m: loss_fn(m)[0], argnums=nnx.DiffState(0, FROZEN))(model)
        (loss, _), grads = nnx.value_and_grad(
            loss_fn, argnums=nnx.DiffState(0, TRAINABLE), has_aux=True)(model)
        optimizer.update(model, grads)
        return loss, grads, frozen_grads

    loss, grads, frozen_grads = step(model, optimizer)
    assert np.isfinite(loss)
    after = flat(host_copy(nnx.state(model)))
    grads = flat(host_copy(grads))
    frozen_grads = flat(host_copy(frozen_grads))

    # The optimiser never sees the teacher, and the teacher's parameters would get no gradient anyway.
    assert grads and not any("teacher" in k for k in grads)
    assert frozen_grads and all(not np.any(g) for g in frozen_grads.values())
    # Every student parameter (fusion and reconstruction head included) is used and gets a gradient.
    assert len(grads) == len(jax.tree.leaves(nnx.state(model.student, nnx.Param)))
    assert [k for k, g in grads.items() if not np.any(g)] == []

    teacher_keys = [k for k in before if "teacher" in k]
    bank_keys = [k for k in before if "prompts" in k]
    assert any("mean" in k for k in teacher_keys) and any("kernel" in k for k in teacher_keys)
    assert [k for k in teacher_keys + bank_keys if not np.array_equal(before[k], after[k])] == []
    changed = [k for k in before if "student" in k and not np.array_equal(before[k], after[k])]
    student_keys = [k for k in before if "student" in k]
    assert sorted(changed) == sorted(student_keys)  # parameters and the student's own BN statistics


def test_retrieval_excludes_self_in_training_and_finds_self_at_test(images, teacher_features):
    top_k = 2
    model = tiny(top_k=top_k)
    model.prepare(lambda: bank_batches(images))
    bank = model.prompts
    np.testing.assert_array_equal(bank.entry_indices[...], DATASET_INDICES)

    deepest = teacher_features[-1]
    pooled = np.asarray(deepest, np.float64).mean(axis=(1, 2))
    keys = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    similarity = keys @ keys.T

    train_pos, train_prompts = bank.retrieve(deepest, top_k=top_k, exclude_indices=DATASET_INDICES)
    train_pos = np.asarray(train_pos)
    assert not np.any(DATASET_INDICES[train_pos] == DATASET_INDICES[:, None])
    np.fill_diagonal(similarity, -np.inf)
    np.testing.assert_array_equal(train_pos, np.argsort(-similarity, axis=1)[:, :top_k])
    # k > 1: each level's prompt is the mean of the k entries' stored features.
    for level, prompt in enumerate(train_prompts):
        stored = np.asarray(bank.features[level][...], np.float32)
        np.testing.assert_allclose(prompt, stored[train_pos].mean(axis=1), rtol=1e-6, atol=1e-6)

    test_pos, _ = bank.retrieve(deepest, top_k=1)
    np.testing.assert_array_equal(np.asarray(test_pos)[:, 0], np.arange(NUM_IMAGES))


def test_prompts_steer_the_test_time_output_and_vanish_when_off(images):
    # (Their use in training shows in the train-step test: the fusion parameters get gradients.)
    with_prompts = tiny()
    with_prompts.prepare(lambda: bank_batches(images))
    forward = nnx.jit(lambda m, x, i: m(x, train=False, indices=i).student)
    batch = jnp.asarray(images[:2])
    original = forward(with_prompts, batch, None)
    bank = with_prompts.prompts
    bank.set([f[...].astype(jnp.float32) * 3.0 + 1.0 for f in bank.features], bank.entry_indices[...])
    changed = forward(with_prompts, batch, None)
    for a, b in zip(original, changed):
        assert not np.allclose(a, b, atol=1e-4)

    without = tiny(prompts=False)
    assert without.prompts is None
    assert jax.tree.leaves(nnx.state(without, PromptBank)) == []
    assert not any(isinstance(node, CrossAttentionFusion) for _, node in nnx.iter_graph(without))
    without.prepare(lambda: pytest.fail("read the training split with prompts off"))  # nothing to fill
    features = traced(without, batch, train=True)  # no bank and no indices needed
    assert [f.shape for f in features.student] == [f.shape for f in features.teacher]


def test_bank_size_and_dtype_bound_the_bank(images, teacher_features):
    model = tiny(bank_size=3, bank_dtype="float16", bank_seed=1)
    model.prepare(lambda: bank_batches(images))
    bank = model.prompts
    assert bank.size == 3
    assert set(np.asarray(bank.entry_indices[...])) <= set(DATASET_INDICES)
    assert all(f[...].dtype == jnp.float16 for f in bank.features)
    values_per_image = 64 * 16 * 16 + 128 * 8 * 8 + 256 * 4 * 4  # F1..F3 at 64 px
    per_image = values_per_image * 2 + 256 * 4 + 4  # fp16 features, fp32 key, int32 index
    assert bank.nbytes == 3 * per_image == 3 * bank_bytes_per_image(CHANNELS, SIZE, "float16")
    # Entries hold the teacher features of the images they name (rounded to fp16).
    chosen = np.searchsorted(DATASET_INDICES, np.asarray(bank.entry_indices[...]))
    for stored, computed in zip(bank.features, teacher_features):
        np.testing.assert_allclose(np.asarray(stored[...], np.float32),
                                   computed[chosen].astype(np.float16).astype(np.float32), rtol=2e-3, atol=1e-3)
    # 458,752 values per image at 256 px with ResNet18 (docs/reference.md §4.2).
    assert bank_bytes_per_image(CHANNELS, 256, "float32") == 458_752 * 4 + 256 * 4 + 4


def test_reconstruction_switch_and_loss_terms():
    rng = np.random.default_rng(1)
    teacher = [jnp.asarray(rng.normal(size=(2, 8, 8, c)), jnp.float32) for c in (4, 8, 16)]
    student = [t + jnp.asarray(rng.normal(size=t.shape), jnp.float32) for t in teacher]
    clean = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
    normalised = (clean - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])

    def flat_cosine(t, s):
        t, s = np.asarray(t, np.float64).reshape(2, -1), np.asarray(s, np.float64).reshape(2, -1)
        return np.mean(1 - np.sum(t * s, 1) / np.linalg.norm(t, axis=1) / np.linalg.norm(s, axis=1))

    expected_cosine = sum(flat_cosine(t, s) for t, s in zip(teacher, student))
    expected_mse = sum(np.mean((np.asarray(t) - np.asarray(s)) ** 2) for t, s in zip(teacher, student))

    loss = nnx.jit(lambda model, features, images: model.loss(features, images))
    weighted = tiny(rec_weight=0.5)
    total, terms = loss(weighted, Features(teacher, student, jnp.asarray(clean)), jnp.asarray(normalised))
    assert terms["rec_mse"] < 1e-10 and abs(terms["rec_ssim"] - 1) < 1e-5  # target is the [0, 1] image
    np.testing.assert_allclose(total, expected_cosine, rtol=1e-5)

    blurry = jnp.full_like(jnp.asarray(clean), 0.5)
    total, terms = loss(weighted, Features(teacher, student, blurry), jnp.asarray(normalised))
    np.testing.assert_allclose(terms["rec_mse"], np.mean((clean - 0.5) ** 2), rtol=1e-5)
    np.testing.assert_allclose(total, expected_cosine + 0.5 * (terms["rec_mse"] + 1 - terms["rec_ssim"]),
                               rtol=1e-5)

    no_rec = tiny(reconstruction=False, distill_loss="mse")
    assert no_rec.student.reconstruction is None
    total, terms = loss(no_rec, Features(teacher, student, None), jnp.asarray(normalised))
    assert set(terms) == {"distill"}
    np.testing.assert_allclose(total, expected_mse, rtol=1e-5)


def test_own_encoder_skips_switch_removes_the_encoder_concatenation(images):
    def merge_inputs(model):
        stages = [*model.student.decoder, model.student.reconstruction]
        return [(s.merge.conv1.in_features, s.merge.conv1.out_features) for s in stages]

    with_skips = merge_inputs(tiny(prompts=False, student_encoder="own"))
    without = tiny(prompts=False, skips=False, student_encoder="own")
    # Encoder widths at strides 16, 8, 4, 2 for base_width 4: 4w, 2w, w, w.
    assert [i - o for i, o in with_skips] == [16, 8, 4, 4]
    assert [i for i, _ in merge_inputs(without)] == [o for _, o in merge_inputs(without)]
    features = traced(without, images[:2], train=True)
    assert [f.shape for f in features.student] == [f.shape for f in features.teacher]
    assert features.reconstruction.shape == (2, SIZE, SIZE, 3)


def test_bad_inputs_get_clear_errors(images):
    model = tiny()
    with pytest.raises(ValueError, match=r"model\.prepare"):
        traced(model, images[:2], train=False)
    model.prepare(lambda: bank_batches(images))
    with pytest.raises(ValueError, match="index"):
        traced(model, images[:2], train=True)
    with pytest.raises(ValueError, match="multiples of 32"):
        traced(model, np.zeros((1, 48, 48, 3), np.float32), train=False)
    with pytest.raises(ValueError, match="unique"):
        model.prompts.set([f[...][:2] for f in model.prompts.features], np.array([3, 3]))
    with pytest.raises(ValueError, match="distill_loss"):
        tiny(distill_loss="l1")
    with pytest.raises(ValueError, match="bank_dtype"):
        tiny(bank_dtype="bfloat16")
    with pytest.raises(ValueError, match="top_k"):
        tiny(top_k=0)
    with pytest.raises(ValueError, match="student_encoder"):
        tiny(student_encoder="resnet")


def test_teacher_encoder_skips_are_the_deeper_teacher_levels(images):
    def stage_inputs(model):
        return [stage.up.deconv.in_features for stage in model.student.decoder]

    # Stage inputs at strides 32, 16, 8: OCBE's 512 channels, then 4w and 2w (w = 4) decoded
    # channels, plus with skips the teacher's F3 (256) and F2 (128): never the level a stage matches.
    assert stage_inputs(tiny(prompts=False, student_encoder="teacher")) == [512, 16 + 256, 8 + 128]
    assert stage_inputs(tiny(prompts=False, skips=False, student_encoder="teacher")) == [512, 16, 8]
    features = traced(tiny(prompts=False, skips=False, student_encoder="teacher"), images[:2], train=True)
    assert [f.shape for f in features.student] == [f.shape for f in features.teacher]
    assert features.reconstruction.shape == (2, SIZE, SIZE, 3)


@pytest.mark.parametrize("student_encoder", ["teacher", "own"])
def test_what_the_student_sees_of_the_image(images, teacher_features, student_encoder):
    """The teacher-encoder student sees the image only through the frozen teacher's features (no
    gradient reaches the image, and its outputs are the student applied to F1..F3), as RD4AD's
    student does; the own encoder (default) sees the image itself."""
    model = tiny(prompts=False, reconstruction=False, student_encoder=student_encoder)
    batch = jnp.asarray(images[:2])

    def total(m, x):
        return sum(jnp.sum(s) for s in m(x, train=False).student)

    gradient = nnx.jit(nnx.grad(total, argnums=1))(model, batch)
    if student_encoder == "own":
        assert np.any(np.asarray(gradient))
        return
    assert not np.any(np.asarray(gradient))
    through_teacher = nnx.jit(lambda m, t: m.student(t, None, train=False)[0])(
        model, [jnp.asarray(f[:2]) for f in teacher_features])
    direct = nnx.jit(lambda m, x: m(x, train=False).student)(model, batch)
    for a, b in zip(through_teacher, direct):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_map_with_the_reconstruction_term_compiles_and_adds_the_blurred_error(images):
    """eval.reconstruction_weight > 0 used to crash: the map's jit un-normalised the images with numpy."""
    import ml_collections

    from rgpkd_jax import anomaly_maps, evaluate
    from rgpkd_jax.models.rgpkd import unnormalise

    model = tiny(prompts=False)
    batch = jnp.asarray(images[:2])

    def eval_config(weight):
        return ml_collections.ConfigDict(dict(eval=dict(sigma=1.0, combine="sum", score="max", topk=1,
                                                        reconstruction_weight=weight)))

    plain_fn, state = evaluate.make_map_fn(model, eval_config(0.0))
    weighted_fn, _ = evaluate.make_map_fn(model, eval_config(0.5))
    plain, _ = plain_fn(state, batch)
    weighted, scores = weighted_fn(state, batch)
    features = nnx.jit(lambda m, x: m(x, train=False))(model, batch)
    error = anomaly_maps.reconstruction_error_map(features.reconstruction, jnp.clip(unnormalise(batch), 0, 1))
    np.testing.assert_allclose(weighted, plain + 0.5 * anomaly_maps.gaussian_blur(error, 1.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, np.asarray(weighted).reshape(2, -1).max(axis=1), rtol=1e-6)


def test_fusion_is_residual_softmax_attention_over_the_prompt_positions():
    """x + W_o softmax((W_q x)(W_k p)^T / sqrt(C)) (W_v p), against numpy, prompt of another size."""
    rng = np.random.default_rng(2)
    fusion = CrossAttentionFusion(8, 6, nnx.Rngs(3))
    x = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    prompt = rng.normal(size=(2, 2, 3, 6)).astype(np.float32)

    def linear(layer, t):
        return np.asarray(t, np.float64) @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...])

    q = linear(fusion.query, x).reshape(2, 16, 8)
    k = linear(fusion.key, prompt).reshape(2, 6, 8)
    v = linear(fusion.value, prompt).reshape(2, 6, 8)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(8)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = x + linear(fusion.out, (weights @ v).reshape(2, 4, 4, 8))
    np.testing.assert_allclose(fusion(jnp.asarray(x), jnp.asarray(prompt)), expected, rtol=1e-4, atol=1e-4)
