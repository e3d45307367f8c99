"""Load official RD4AD / SK-RD4AD PyTorch checkpoints into our model.

The official code saves ``torch.save({'bn': bn.state_dict(), 'decoder': decoder.state_dict()})``
(hq-deng/RD4AD ``main.py``; SK-RD4AD's "sample_auc" checkpoints). Our ``RD4AD.bn`` and
``RD4AD.decoder`` mirror those module names, so keys map one to one: ``bn.bn_layer.0.conv1.weight``
goes to ``model.bn.bn_layer[0].conv1.kernel``. The layout changes (conv, transposed conv, BN) are
:func:`rgpkd_jax.torch_state.assign_torch_state_dict`'s.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
from flax import nnx

from rgpkd_jax import torch_pickle, torch_state
from rgpkd_jax.models.decoder import Decoder
from rgpkd_jax.models.ocbe import OCBE
from rgpkd_jax.models.resnet import ARCHS

UNUSED_CONV4 = ("bn.conv4.*", "bn.bn4.*")  # created but never used by the official OCBE


class OfficialRD4AD(nnx.Module):
    """The two modules an official checkpoint holds, under its key names. It shares (does not copy)
    the model's ``bn`` and ``decoder``, so one atomic assignment fills both or neither."""

    def __init__(self, bn: nnx.Module, decoder: nnx.Module):
        self.bn = bn
        self.decoder = decoder


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = np.asarray(value)
    return flat


def _read(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(source, Mapping):
        return _flatten(source), "official RD4AD state dict"
    return torch_pickle.load_state_dict(source), os.fspath(source)


def _arch_hint(state_dict: Mapping[str, np.ndarray]) -> str:
    """Which teacher architectures the checkpoint's shapes fit, for the error message."""
    fits = []
    for arch in ARCHS:
        layout = torch_state.torch_layout(OfficialRD4AD(nnx.eval_shape(lambda: OCBE(arch, rngs=nnx.Rngs(0))),
                                                    nnx.eval_shape(lambda: Decoder(arch, rngs=nnx.Rngs(0)))))
        if all(key in state_dict and tuple(state_dict[key].shape) == slot.torch_shape
               for key, slot in layout.items()):
            fits.append(arch)
    if not fits:
        return ""
    return f"\nThe file fits teacher.arch in {fits}; set --config.teacher.arch accordingly."


def load_official_rd4ad(model: nnx.Module, source: str | os.PathLike | Mapping[str, Any]) -> None:
    """Fills ``model.bn`` and ``model.decoder`` (an RD4AD model, skips on or off: the skips have no
    parameters) from an official checkpoint, in place; the teacher is not touched.

    Args:
      model: ``rgpkd_jax.models.rd4ad.RD4AD`` of the checkpoint's teacher architecture.
      source: a ``.pth`` file (read without torch), or ``{'bn': state_dict, 'decoder': state_dict}``
        (nested or with dotted ``bn.``/``decoder.`` keys; numpy arrays or CPU tensors).

    The official ``bn.conv4``/``bn.bn4`` (never used in forward) are loaded when the model was built
    with ``include_unused_conv4=True`` and skipped otherwise.

    Raises:
      StateDictMismatchError: one error listing every missing, unexpected and mis-shaped key (and
        which teacher architecture the file would fit); the model is left unchanged.
    """
    state_dict, name = _read(source)
    if not any(k.startswith(("bn.", "decoder.")) for k in state_dict):
        bare_decoder = any(k.startswith("layer1.") for k in state_dict)
        raise ValueError(
            f"{name} is not an official RD4AD checkpoint: it has no 'bn' and 'decoder' entries"
            + (". It looks like a bare decoder state dict, as SK-RD4AD's best-pixel checkpoints "
               "(seg=1) save; those lack the OCBE weights and cannot be used alone. Use the "
               "checkpoint saved with {'bn': ..., 'decoder': ...}." if bare_decoder else "."))
    ignore = () if model.bn.has_unused_conv4 else UNUSED_CONV4
    try:
        torch_state.assign_torch_state_dict(OfficialRD4AD(model.bn, model.decoder), state_dict,
                                        ignore=ignore, source=name)
    except torch_state.StateDictMismatchError as e:
        raise torch_state.StateDictMismatchError(str(e) + _arch_hint(state_dict), e.missing, e.unexpected,
                                             e.misshaped) from None
