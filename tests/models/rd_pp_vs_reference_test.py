"""Parity with PyTorch and GeomLoss: RD++'s projection layer, forward features, every loss term,
the total loss and its gradient w.r.t. every trained parameter, against torch modules in the
official structure (`tests/torch_rd_pp.py`, `tests/torch_rd4ad.py`) holding the same random weights.

Everything runs in float64 on both sides, so the only differences are rounding: sums of at most a
few thousand products per output through about thirty layers, ~1e-16 relative each, stay far below
the 1e-9 relative tolerance used (a wrong layer, weight layout or loss weight gives O(1e-2) or more).
The SSOT term is zero up to rounding on both sides (the two clouds it compares are one set of
points, docs/reference.md §11.8); its values, differences of dual potentials no larger than the
cost matrix's ~1e-4 entries, must agree to 1e-15 absolute.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax.models import TRAINABLE, set_compute_dtype
from rgpkd_jax.models.official_checkpoint import load_official_rd4ad
from rgpkd_jax.models.rd_pp import RDPlusPlus, projection_loss
from rgpkd_jax.torch_state import assign_torch_state_dict, torch_layout
from tests.helpers import import_oracle

torch = import_oracle("torch")
import_oracle("torchvision")
import_oracle("geomloss")
from tests import torch_rd_pp  # noqa: E402  (needs torch and geomloss)
from tests.torch_rd4ad import TorchDecoder, TorchOCBE18, TorchResNet18Taps  # noqa: E402

RTOL = 1e-9
SSOT_ATOL = 1e-15
LR_RATIO = 0.2  # the official projection lr / rest, so the stored-divided-by-s weights are exercised
PROJ_KEYS = {f"{name}.proj.{3 * i}.": f"{name}.proj.{i}." for name in ("proj_a", "proj_b", "proj_c")
             for i in range(4)}


def _random_bn_statistics(module, seed):
    """BN affine parameters and running statistics away from their init, so eval mode tests them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
                m.running_mean.normal_(0.0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return module


@pytest.fixture(scope="module")
def pair():
    """(our float64 ResNet18 RD++, torch encoder, projection, OCBE, decoder) with equal weights."""
    torch.manual_seed(0)
    encoder = _random_bn_statistics(TorchResNet18Taps(), 1).double().eval()
    proj = torch_rd_pp.TorchMultiProjection().double()
    bn = _random_bn_statistics(TorchOCBE18(), 2).double()
    decoder = _random_bn_statistics(TorchDecoder(False, (2, 2, 2)), 3).double()
    with jax.enable_x64(True):
        model = RDPlusPlus("resnet18", rngs=nnx.Rngs(0), proj_lr_ratio=LR_RATIO, micro_batches=1)
        set_compute_dtype(model, "float64")
        assign_torch_state_dict(model.teacher, encoder.net.state_dict(), ignore=("fc.*", "layer4.*"))
        assign_torch_state_dict(model.proj, proj.state_dict(), prefix_map=PROJ_KEYS)
        for layer in (model.proj.proj_a, model.proj.proj_b, model.proj.proj_c):
            for conv in layer.proj:  # stored divided by the learning-rate ratio (rd_pp.ProjLayer)
                conv.kernel.set_value(conv.kernel[...] / LR_RATIO)
                conv.bias.set_value(conv.bias[...] / LR_RATIO)
        load_official_rd4ad(model, {"bn": bn.state_dict(), "decoder": decoder.state_dict()})
    return model, encoder, proj, bn, decoder


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 1, 2))))


def _nhwc(t):
    a = t.detach().numpy()
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def _close(ours, theirs, what, floor=1e-300):
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, what
    scale = max(np.abs(theirs).max(), floor)
    assert np.abs(ours - theirs).max() / scale < RTOL, (what, np.abs(ours - theirs).max() / scale)


def _images(seed, batch=3):
    """32 px keeps every level (E3 2x2, OCBE 1x1) and the noise patches (sides 1-3) small."""
    return np.random.default_rng(seed).normal(size=(batch, 32, 32, 3))


def test_projection_layer_matches_torch(pair):
    model, _, proj, _, _ = pair
    rng = np.random.default_rng(5)
    taps = [np.abs(rng.normal(size=(2, s, s, c))) for s, c in ((8, 64), (4, 128), (2, 256))]
    with jax.enable_x64(True):
        ours = model.proj([jnp.asarray(t) for t in taps])
    theirs = proj([_nchw(t) for t in taps])
    for level, (o, t) in enumerate(zip(ours, theirs)):
        _close(o, _nhwc(t), f"projection level {level}")


def test_eval_features_match_torch(pair):
    model, encoder, proj, bn, decoder = pair
    images = _images(6)
    with jax.enable_x64(True):
        features = model(jnp.asarray(images), train=False)
    bn.eval(), decoder.eval()
    with torch.no_grad():
        teacher = encoder(_nchw(images))
        student = decoder(bn(proj(teacher)))
    for level in range(3):
        _close(features.teacher[level], _nhwc(teacher[level]), f"teacher {level}")
        _close(features.student[level], _nhwc(student[level]), f"student {level}")


def test_loss_terms_total_and_gradients_match_torch(pair):
    model, encoder, proj, bn, decoder = pair
    images = _images(7)
    with jax.enable_x64(True):
        noisy, permutation = model.training_inputs(jnp.asarray(images), jax.random.key(3))
        assert not np.array_equal(np.asarray(permutation), np.arange(3))  # the shuffle is exercised

        def total(m):
            return m.objective(jnp.asarray(images), noisy, permutation)

        (loss, terms), grads = nnx.jit(nnx.value_and_grad(total, argnums=nnx.DiffState(0, TRAINABLE),
                                                          has_aux=True))(model)
    bn.train(), decoder.train()
    for module in (proj, bn, decoder):
        module.zero_grad()
    t_loss, t_terms = torch_rd_pp.objective(encoder, proj, bn, decoder, _nchw(images), _nchw(noisy),
                                            torch.from_numpy(np.array(permutation)))
    t_loss.backward()

    for name in ("distillation", "projection", "reconstruction", "contrast"):
        _close(terms[name], _nhwc(t_terms[name]), name)
    assert abs(float(terms["ssot"]) - t_terms["ssot"].item()) < SSOT_ATOL
    _close(loss, _nhwc(t_loss), "total")
    assert float(terms["contrast"]) > 0 or float(terms["reconstruction"]) > 0  # the noise reached the losses

    flat = {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(grads)}
    # A projection conv's bias feeds an instance norm, which removes per-channel constants: its
    # true gradient is zero and both sides hold rounding noise (~1e-16 of the gradients' scale), so
    # no gradient is compared on a scale below 1e-3 of the largest one.
    trained = {m: {k: p for k, p in m.named_parameters() if p.grad is not None} for m in (proj, bn, decoder)}
    floor = 1e-3 * max(np.abs(p.grad.numpy()).max() for params in trained.values() for p in params.values())
    compared = 0
    for attr, module, prefix_map, scale in (("proj", proj, PROJ_KEYS, LR_RATIO), ("bn", bn, {}, 1.0),
                                            ("decoder", decoder, {}, 1.0)):
        torch_params = trained[module]  # all but the official OCBE's unused conv4/bn4
        for key, slot in torch_layout(getattr(model, attr), prefix_map=prefix_map).items():
            if key in torch_params:
                # d loss / d stored = s x d loss / d effective for the projection's divided weights
                _close(flat[(attr, *slot.path)] / scale, slot.to_flax(torch_params[key].grad.numpy()),
                       f"gradient {attr}.{key}", floor)
                compared += 1
    assert compared == sum(len(params) for params in trained.values())


def test_projection_loss_and_gradients_match_torch_with_the_hinge_active_and_not():
    """The three terms on inputs built so that the contrast hinge max(0, cos - 0.5) is active for
    some samples and not for others (random networks rarely reach it), values and gradients w.r.t.
    both projections."""
    rng = np.random.default_rng(8)
    spread = np.array([0.2, 0.8, 3.0, 10.0])[:, None, None, None]  # per-sample decorrelation
    shapes = ((8, 8, 64), (4, 4, 128), (2, 2, 256))
    noisy_teacher = [np.abs(rng.normal(size=(4, *s))) + 0.5 for s in shapes]
    projected = [t + spread * rng.normal(size=t.shape) for t in noisy_teacher]
    projected_noisy = [p + 0.3 * rng.normal(size=p.shape) for p in projected]
    permutation = np.array([2, 0, 3, 1])
    with jax.enable_x64(True):
        def loss(p, pn):
            return projection_loss([jnp.asarray(t) for t in noisy_teacher], pn, p, jnp.asarray(permutation))

        (total, terms), (g_p, g_pn) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            [jnp.asarray(p) for p in projected], [jnp.asarray(p) for p in projected_noisy])
    t_p = [_nchw(p).requires_grad_() for p in projected]
    t_pn = [_nchw(p).requires_grad_() for p in projected_noisy]
    t_total, t_terms = torch_rd_pp.projection_loss([_nchw(t) for t in noisy_teacher], t_pn, t_p,
                                                   torch.from_numpy(permutation))
    t_total.backward()
    flat = [a.reshape(4, -1) for a in (noisy_teacher[0], projected[0])]
    cos = np.sum(flat[0] * flat[1], 1) / np.linalg.norm(flat[0], axis=1) / np.linalg.norm(flat[1], axis=1)
    assert cos.max() > 0.6 and cos.min() < 0.4  # the hinge is on for some samples, off for others
    for name in ("reconstruction", "contrast"):
        _close(terms[name], _nhwc(t_terms[name]), name)
    assert abs(float(terms["ssot"]) - t_terms["ssot"].item()) < SSOT_ATOL
    _close(total, _nhwc(t_total), "projection loss")
    for ours, theirs in zip(g_p + g_pn, t_p + t_pn):
        _close(ours, _nhwc(theirs.grad), "projection loss gradient")
