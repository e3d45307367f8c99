"""Float32 precision of RD4AD's training gradient, against the official structure in PyTorch
(`tests/torch_rd4ad.py`) on the same random weights and teacher features (issue 25, item 10;
docs/architecture.md, "Numerics").

Each implementation's float32 gradient (of the training loss with respect to the student's
parameters) is compared with its own float64 gradient. Plain, that comparison is dominated by
ReLU sign flips: an input within float32's forward error of zero takes the other branch, and
one flip moves the gradient by 1e-3 of its norm at 128 px (measured: 3 flips in ours, 1 in
PyTorch, for 7.4e-3 and 1.2e-3). Which inputs flip depends on the summation order, so that
figure is a lottery that says nothing about precision. The float64 reference here therefore
takes each ReLU's mask from the float32 forward pass: what remains is the rounding of the
continuous computation, the same sequence of layers in both implementations.

Bound: with the masks fixed, both gradients sum the same per-operation roundings (u = 2^-24)
through the same weights, so their errors differ by the constant factors of summation order
(blocked, pairwise, vector width: at most a few), never by orders of magnitude. Asserted: ours
<= 4 x PyTorch's + 64 u, the floor for a reference that is exact by chance. Measured at 64 px:
see docs/architecture.md.

`python -m tests.models.gradient_precision_test ARCH SIZE [BATCH]` prints both errors, plain and
flip-free, e.g. for wide_resnet50_2 at 128 px (several CPU minutes).
"""

from __future__ import annotations

import contextlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rgpkd_jax.models import conv_ops, set_compute_dtype
from rgpkd_jax.models.official_checkpoint import load_official_rd4ad
from rgpkd_jax.models.rd4ad import RD4AD
from tests.helpers import import_oracle

torch = import_oracle("torch")
torchvision = import_oracle("torchvision")
from tests.torch_rd4ad import TorchDecoder, TorchOCBE18, TorchOCBE50, standin_loss  # noqa: E402

UNIT_ROUNDOFF = 2.0 ** -24
RATIO = 4.0
FLOOR = 64 * UNIT_ROUNDOFF


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _torch_models(arch: str, seed: int):
    """Random official-structure OCBE and decoder (Conv2d: the official Kaiming init; the
    transposed convolutions keep PyTorch's default) and a random torchvision teacher, float64."""
    torch.manual_seed(seed)
    if arch == "resnet18":
        modules = TorchOCBE18(), TorchDecoder(False, (2, 2, 2)), torchvision.models.resnet18()
    else:
        modules = TorchOCBE50(), TorchDecoder(True, (3, 4, 6), base_width=128), torchvision.models.wide_resnet50_2()
    for m in (*modules[0].modules(), *modules[1].modules()):  # the official init loop: Conv2d only
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return [m.double() for m in modules]


def _teacher_taps(teacher, size: int, batch: int, seed: int) -> list:
    """E1..E3 of random images, computed in float64 and rounded once to float32: both dtypes'
    runs start from the same values."""
    images = torch.randn(batch, 3, size, size, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(seed))
    n = teacher.eval()
    with torch.no_grad():
        e1 = n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(images)))))
        e2 = n.layer2(e1)
        taps = [e1, e2, n.layer3(e2)]
    return [t.float().double() for t in taps]


class _ReluMasks:
    """Records each ReLU's mask in call order (``replay`` False) or applies the recorded masks
    in that order instead of the inputs' signs (``replay`` True)."""

    def __init__(self):
        self.masks, self.replay, self._next = [], False, 0

    def apply(self, x, relu, record, where):
        """``record(x)`` appends x > 0 to ``masks``; ``where(mask, x)`` is x where mask, else 0."""
        if not self.replay:
            record(x)
            return relu(x)
        mask = self.masks[self._next]
        self._next += 1
        return where(mask, x)


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def torch_gradients(ocbe, decoder, taps, dtype, masks: _ReluMasks | None = None) -> np.ndarray:
    """The official loss's gradient over the student's parameters, in ``dtype``, train-mode BN."""
    functional = torch.nn.functional
    relu = torch.relu
    hook = (lambda x, *args, **kwargs: masks.apply(x, relu, lambda v: masks.masks.append((v > 0).detach()),
                                                   lambda m, v: v * m.to(v.dtype))) if masks else relu
    params = [p for module in (ocbe, decoder) for p in module.to(dtype).train().parameters()]
    for p in params:
        p.grad = None
    inputs = [t.to(dtype) for t in taps]
    with _patched(torch, "relu", hook), _patched(functional, "relu", lambda x, inplace=False: hook(x)):
        standin_loss(inputs, decoder(ocbe(inputs))).backward()
    return np.concatenate([p.grad.double().numpy().ravel() for p in params if p.grad is not None])


def our_gradients(arch, state_dict, taps, dtype: str, masks: _ReluMasks | None = None) -> np.ndarray:
    """Our RD4AD (conv_impl "cpu"), loaded from the same state dict, computing in ``dtype``."""
    model = RD4AD(arch, rngs=nnx.Rngs(0), ops=conv_ops.resolve("cpu"))
    load_official_rd4ad(model, state_dict)
    set_compute_dtype(model, dtype)
    features = [jnp.asarray(t.permute(0, 2, 3, 1).numpy(), dtype) for t in taps]
    graphdef, state = nnx.split(model)

    def relu(x):
        if masks is None:
            return jax.nn.relu(x)
        return masks.apply(x, jax.nn.relu, record, lambda m, v: jnp.where(m, v, 0))

    def record(x):  # in program order, when the compiled forward pass runs
        jax.debug.callback(lambda m: masks.masks.append(np.asarray(m)), x > 0, ordered=True)

    def loss(state):
        m = nnx.merge(graphdef, state)
        return m.loss(m(features[0], train=True, teacher_features=features), features[0])[0]

    with _patched(nnx, "relu", relu):
        # Replayed masks enter as constants while tracing, which follows program order.
        grads = jax.jit(jax.grad(loss))(state)
    return np.concatenate([np.asarray(g, np.float64).ravel() for g in jax.tree.leaves(grads)])


def gradient_errors(arch: str = "resnet18", size: int = 64, batch: int = 2, seed: int = 0,
                    plain: bool = True) -> dict:
    """Relative error of each implementation's float32 gradient against its float64 one: with
    the float64 pass replaying the float32 ReLU masks (flip-free) and, if ``plain``, without."""
    ocbe, decoder, teacher = _torch_models(arch, seed)
    taps = _teacher_taps(teacher, size, batch, seed)
    state_dict = {"bn": {k: v.float().numpy() for k, v in ocbe.state_dict().items()},
                  "decoder": {k: v.float().numpy() for k, v in decoder.state_dict().items()}}
    errors = {}
    with jax.enable_x64(True):
        for name, gradients, dtypes in (("torch", lambda *a, **k: torch_gradients(ocbe, decoder, *a, **k),
                                         (torch.float32, torch.float64)),
                                        ("ours", lambda *a, **k: our_gradients(arch, state_dict, *a, **k),
                                         ("float32", "float64"))):
            masks = _ReluMasks()
            low = gradients(taps, dtypes[0], masks)
            masks.replay = True
            errors[name + "_flip_free"] = _relative(low, gradients(taps, dtypes[1], masks))
            if plain:
                errors[name + "_plain"] = _relative(low, gradients(taps, dtypes[1]))
    return errors


def test_float32_gradient_is_as_precise_as_pytorch():
    errors = gradient_errors("resnet18", size=64, batch=2, plain=False)
    assert errors["torch_flip_free"] < 1e-3, errors  # the comparison is meaningful
    assert errors["ours_flip_free"] <= RATIO * errors["torch_flip_free"] + FLOOR, errors


if __name__ == "__main__":
    arch, size = sys.argv[1], int(sys.argv[2])
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    for key, value in gradient_errors(arch, size, batch).items():
        print(f"{key:16s} {value:.3e}")
