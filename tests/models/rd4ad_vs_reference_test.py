"""Parity with PyTorch: an OCBE and a decoder assembled from torch layers in the official structure
(`tests/torch_rd4ad.py`), under the official key names (written from docs/reference.md §2.1-2.2 and §3.2), with random
weights and BN statistics, are converted by ``load_official_rd4ad`` and must give the same eval-mode
outputs as our modules (relative error < 1e-5)."""

import jax
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax.torch_state import StateDictMismatchError
from rgpkd_jax.models.official_checkpoint import load_official_rd4ad
from rgpkd_jax.models.rd4ad import RD4AD
from tests.helpers import import_oracle

torch = import_oracle("torch")  # every test here compares with torch
nn = torch.nn
import_oracle("torchvision")
from tests.torch_rd4ad import TorchDecoder, TorchOCBE18  # noqa: E402  (needs torch)

RTOL = 1e-5


def _randomise(module, seed):
    """Random weights and BN affine parameters and statistics, in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_mean = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fan = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan) ** 0.5
    return module.eval()


def _nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))))


def _assert_close(ours, theirs):
    ours, theirs = np.asarray(ours), _nhwc(theirs)
    assert ours.shape == theirs.shape
    rel = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert rel < RTOL, rel


def _abstract(arch, **kwargs):
    return nnx.eval_shape(lambda: RD4AD(arch, rngs=nnx.Rngs(0), **kwargs))


@pytest.fixture(scope="module")
def torch_resnet18():
    return _randomise(TorchOCBE18(), 0), _randomise(TorchDecoder(False, (2, 2, 2)), 1)


def _teacher_taps(seed=2, batch=2):
    """Random E1..E3 of a ResNet18 teacher at 64 px (NHWC), made non-negative as after a ReLU."""
    rng = np.random.default_rng(seed)
    return [np.abs(rng.normal(size=(batch, s, s, c))).astype(np.float32)
            for s, c in ((16, 64), (8, 128), (4, 256))]


@pytest.mark.parametrize("skips", [False, True], ids=["rd4ad", "sk_rd4ad"])  # method subset: RD4AD's class
def test_resnet18_official_state_dict_converts_to_equal_outputs(torch_resnet18, skips):
    tbn, tdec = torch_resnet18
    model = _abstract("resnet18", skips=skips)
    load_official_rd4ad(model, {"bn": tbn.state_dict(), "decoder": tdec.state_dict()})
    taps = _teacher_taps()
    with torch.no_grad():
        t_taps = [_nchw(t) for t in taps]
        t_embedding = tbn(t_taps)
        t_out = tdec(t_embedding, t_taps if skips else None)
    embedding = model.bn(taps, train=False)
    _assert_close(embedding, t_embedding)
    for ours, theirs in zip(model.decoder(embedding, taps, train=False), t_out):
        _assert_close(ours, theirs)


def test_pth_file_and_unused_conv4(torch_resnet18, tmp_path):
    """A torch.save'd file reads without torch; conv4/bn4 load when the model keeps them."""
    tbn, tdec = torch_resnet18
    path = tmp_path / "official.pth"
    torch.save({"bn": tbn.state_dict(), "decoder": tdec.state_dict()}, path)
    model = _abstract("resnet18", include_unused_conv4=True)
    load_official_rd4ad(model, path)
    np.testing.assert_array_equal(model.bn.conv4.kernel[...][0, 0], tbn.conv4.weight.detach().numpy()[:, :, 0, 0].T)
    np.testing.assert_array_equal(model.bn.bn4.var[...], tbn.bn4.running_var.numpy())
    np.testing.assert_array_equal(model.decoder.layer3[1].bn2.mean[...], tdec.layer3[1].bn2.running_mean.numpy())


def test_wrn50_decoder_bottlenecks_match_torch():
    """The wide Bottleneck decoder (width 2x, blocks 3-4-6) under the official key names."""
    tdec = _randomise(TorchDecoder(True, (3, 4, 6), base_width=128), 3)
    model = _abstract("wide_resnet50_2")
    load_official_rd4ad(model, {"bn": _zero_bn_state_dict(model), "decoder": tdec.state_dict()})
    embedding = np.random.default_rng(4).normal(size=(1, 2, 2, 2048)).astype(np.float32)
    with torch.no_grad():
        t_out = tdec(_nchw(embedding))
    for ours, theirs in zip(model.decoder(embedding, train=False), t_out):
        _assert_close(ours, theirs)


def _zero_bn_state_dict(model):
    """Zeros shaped as the model's official ``bn`` state dict (only the decoder is compared)."""
    from rgpkd_jax.torch_state import torch_layout
    return {k: np.zeros(slot.torch_shape, np.float32) for k, slot in torch_layout(model.bn).items()}


def test_mismatched_checkpoints_raise_clear_errors(torch_resnet18):
    tbn, tdec = torch_resnet18
    official = {"bn": tbn.state_dict(), "decoder": dict(tdec.state_dict())}
    del official["decoder"]["layer2.0.upsample.0.weight"]
    model = _abstract("resnet18")
    with pytest.raises(StateDictMismatchError, match=r"decoder\.layer2\.0\.upsample\.0\.weight"):
        load_official_rd4ad(model, official)
    assert all(isinstance(v, jax.ShapeDtypeStruct) for v in jax.tree.leaves(nnx.state(model)))  # unchanged
    with pytest.raises(StateDictMismatchError, match=r"fits teacher.arch in \['resnet18'\]"):
        load_official_rd4ad(_abstract("wide_resnet50_2"), {"bn": tbn.state_dict(), "decoder": tdec.state_dict()})
    with pytest.raises(ValueError, match="seg=1"):
        load_official_rd4ad(model, tdec.state_dict())
