"""Packages only some benchmarks need (torch, anomalib, onnxruntime, onnxscript, jax2onnx...):
imported where they are used, never at a module's top, and asked for here first so a missing one
is one line naming it and how to install it, not a traceback from deep inside a run."""

from __future__ import annotations

import importlib.util
from typing import Sequence

PEERS_HINT = "pip install -e '.[peers]' (anomalib==2.7.0 with torch 2.14.1; best in its own virtual environment)"
EXPORT_HINT = ("pip install -e '.[peers,export]' && pip install --no-deps jax2onnx==0.17.1 "
               "(best in a virtual environment of its own)")


class MissingPackageError(RuntimeError):
    """A package this benchmark needs is not installed; the message says how to install it."""


def missing(packages: Sequence[str]) -> list[str]:
    """The packages that cannot be imported here (empty when all can)."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def require(packages: Sequence[str], *, what: str, install: str) -> None:
    """Raises MissingPackageError (one line) unless every package can be imported."""
    absent = missing(packages)
    if absent:
        raise MissingPackageError(f"{what} needs {', '.join(absent)}, not installed here; install: {install}")
