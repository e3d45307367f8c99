"""Torch state dicts -> NNX modules: key mapping, layout changes, and one error listing every mismatch.

:func:`assign_torch_state_dict` copies any torch state dict into any NNX module whose attribute
names mirror the torch module names (torchvision ResNets, RD4AD's ``bn``/``decoder``), checking
every key and shape first. ``.pth`` files are read by :mod:`rgpkd_jax.torch_pickle`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

ALWAYS_IGNORED = ("*num_batches_tracked",)  # BN step counters: flax keeps none


class StateDictMismatchError(ValueError):
    """A state dict that does not fit a module; ``missing``/``unexpected``/``misshaped`` list why."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str], misshaped: list[str]):
        super().__init__(message)
        self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped


@dataclasses.dataclass(frozen=True)
class TorchSlot:
    """Where one torch tensor goes: our variable's path and shape, and the layout change.

    Our array is ``np.flip(np.transpose(torch_array, perm), flip)``.
    """

    path: tuple[str | int, ...]
    shape: tuple[int, ...]
    dtype: Any
    perm: tuple[int, ...]
    flip: tuple[int, ...] = ()

    @property
    def torch_shape(self) -> tuple[int, ...]:
        shape = [0] * len(self.perm)
        for ours, theirs in enumerate(self.perm):
            shape[theirs] = self.shape[ours]
        return tuple(shape)

    def to_flax(self, value: np.ndarray) -> np.ndarray:
        return np.flip(np.transpose(value, self.perm), self.flip)


_BATCHNORM_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torch_leaf(parent: nnx.Module, leaf: str, ndim: int) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(torch name, perm, flip) of the variable ``leaf`` of ``parent``; see :class:`TorchSlot`."""
    spatial_first = tuple(range(2, ndim))
    if isinstance(parent, nnx.BatchNorm):
        return _BATCHNORM_NAMES.get(leaf, leaf), tuple(range(ndim)), ()
    if leaf == "kernel" and isinstance(parent, nnx.Conv):
        return "weight", (*spatial_first, 1, 0), ()  # (O, I, *k) -> (*k, I, O)
    if leaf == "kernel" and isinstance(parent, nnx.ConvTranspose):
        # torch (I, O, *k) is the gradient of a conv. Flax's default transposed conv correlates
        # the stride-dilated input with the kernel un-flipped, so the kernel is flipped here;
        # with transpose_kernel=True flax flips and swaps I/O itself and wants (*k, O, I).
        if parent.transpose_kernel:
            return "weight", (*spatial_first, 1, 0), ()
        return "weight", (*spatial_first, 0, 1), tuple(range(ndim - 2))
    if leaf == "kernel" and isinstance(parent, nnx.Linear):
        return "weight", (1, 0), ()  # (out, in) -> (in, out)
    return leaf, tuple(range(ndim)), ()


def _apply_prefix_map(key: str, prefix_map: Mapping[str, str]) -> str:
    """Our dotted key -> torch key, through the longest of our prefixes that matches."""
    matches = [(ours, theirs) for theirs, ours in prefix_map.items() if key.startswith(ours)]
    if not matches:
        return key
    ours, theirs = max(matches, key=lambda m: len(m[0]))
    return theirs + key[len(ours) :]


def torch_layout(module: nnx.Module, *, prefix_map: Mapping[str, str] | None = None) -> dict[str, TorchSlot]:
    """Maps each torch key that ``module`` expects to its :class:`TorchSlot`.

    Our path ``('layer1', 0, 'downsample', 0, 'kernel')`` becomes ``layer1.0.downsample.0.weight``:
    path parts joined by dots, the last renamed by the kind of module that owns it (Conv and
    Linear ``kernel`` -> ``weight``; BatchNorm ``scale/bias/mean/var`` -> ``weight/bias/
    running_mean/running_var``; any other variable keeps its name). Works on abstract modules
    (``nnx.eval_shape``) too. Only ``nnx.Param`` and ``nnx.BatchStat`` variables are mapped.
    """
    owners = dict(nnx.iter_modules(module))
    layout = {}
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))):
        name, perm, flip = _torch_leaf(owners[path[:-1]], str(path[-1]), len(var.shape))
        key = ".".join([*(str(p) for p in path[:-1]), name])
        key = _apply_prefix_map(key, prefix_map or {})
        layout[key] = TorchSlot(tuple(path), tuple(var.shape), var.dtype, perm, flip)
    return layout


def mismatches(layout: Mapping[str, TorchSlot], state_dict: Mapping[str, np.ndarray],
                ignore: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    patterns = (*ALWAYS_IGNORED, *ignore)
    used = {k for k in state_dict if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    missing = [f"{k} {slot.torch_shape}" for k, slot in layout.items() if k not in state_dict]
    unexpected = [f"{k} {tuple(state_dict[k].shape)}" for k in sorted(used - layout.keys())]
    misshaped = [f"{k}: file {tuple(state_dict[k].shape)}, model expects {slot.torch_shape}"
                 for k, slot in layout.items()
                 if k in state_dict and tuple(state_dict[k].shape) != slot.torch_shape]
    return missing, unexpected, misshaped


def assign_torch_state_dict(module: nnx.Module, state_dict: Mapping[str, np.ndarray], *,
                            prefix_map: Mapping[str, str] | None = None, ignore: Sequence[str] = (),
                            source: str = "state dict") -> None:
    """Copies a torch state dict into ``module`` in place, after checking every key and shape.

    Args:
      module: any NNX module whose attribute names follow the torch module names (lists of
        submodules as ``nnx.List``, so indices match ``torch.nn.Sequential``). Its ``nnx.Param``
        and ``nnx.BatchStat`` variables are all replaced (an abstract module from
        ``nnx.eval_shape`` becomes concrete); other variables are untouched.
      state_dict: torch key -> numpy array (:func:`rgpkd_jax.torch_pickle.load_state_dict`).
      prefix_map: torch key prefix -> our dotted path prefix. ``{'bn.': ''}`` loads the ``bn.*``
        entries of an RD4AD checkpoint into the module given (pass ``ignore=('decoder.*',)`` for
        the rest); ``{'bn.': 'ocbe.'}`` loads them into its ``ocbe`` submodule.
      ignore: fnmatch patterns of torch keys to skip (e.g. ``('fc.*',)`` for torchvision);
        ``*num_batches_tracked`` is always skipped.
      source: names the checkpoint in error messages.

    Layouts: Conv (O, I, kh, kw) -> (kh, kw, I, O); ConvTranspose (I, O, kh, kw) -> flipped
    (kh, kw, I, O) (or (kh, kw, O, I) unflipped with ``transpose_kernel=True``); Linear
    (out, in) -> (in, out); BatchNorm weight/bias/running_mean/running_var -> scale/bias/mean/var.
    Values are cast to the module's dtypes.

    Raises:
      StateDictMismatchError: one error listing all missing, unexpected and mis-shaped keys;
        the module is left unchanged.
    """
    layout = torch_layout(module, prefix_map=prefix_map)
    missing, unexpected, misshaped = mismatches(layout, state_dict, ignore)
    if missing or unexpected or misshaped:
        lines = [f"{source} does not fit {type(module).__name__}: {len(missing)} missing, "
                 f"{len(unexpected)} unexpected, {len(misshaped)} mis-shaped key(s)"]
        for title, items in (("missing (the model has them, the file does not)", missing),
                             ("unexpected (the file has them, the model does not)", unexpected),
                             ("mis-shaped (torch layout)", misshaped)):
            if items:
                lines.append(f"  {title}:")
                lines += [f"    {item}" for item in items]
        raise StateDictMismatchError("\n".join(lines), missing, unexpected, misshaped)
    values = {slot.path: jnp.asarray(slot.to_flax(np.asarray(state_dict[key])), dtype=slot.dtype)
              for key, slot in layout.items()}
    nnx.update(module, nnx.from_flat_state(values))
