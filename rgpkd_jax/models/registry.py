"""The one registry of methods: name -> the model class that builds it, and how tables name it.

The command lines, preflight, the benchmarks and the tests read it (`list_methods`); adding a
method is its own module(s), a config file ``configs/<name>.py`` and one line here
(docs/extending.md). A class is imported only when its method is first asked for.
"""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class MethodEntry:
    name: str    # config.method, configs/<name>.py, the leaderboard's method column
    model: str   # "module:Class" of the models.method.Method subclass that builds it
    title: str   # how tables and figures name it
    source: str  # the paper, or "ours"


_ENTRIES = (
    MethodEntry("rd4ad", "rgpkd_jax.models.rd4ad:RD4AD", "RD4AD", "Deng & Li, CVPR 2022"),
    MethodEntry("sk_rd4ad", "rgpkd_jax.models.rd4ad:RD4AD", "SK-RD4AD", "Park et al., CVPRW 2025"),
    MethodEntry("rgpkd", "rgpkd_jax.models.rgpkd:RGPKD", "RGPKD (ours)",
                "our interpretation of the RGPKD description (docs/rgpkd.md)"),
    MethodEntry("rd_pp", "rgpkd_jax.models.rd_pp:RDPlusPlus", "RD++", "Tien et al., CVPR 2023"),
)
REGISTRY = {entry.name: entry for entry in _ENTRIES}


def list_methods() -> tuple[str, ...]:
    """Every registered method's name, in registration order."""
    return tuple(REGISTRY)


def get_method(name: str) -> MethodEntry:
    """The registry entry of ``name``; an error listing the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r} (config.method); choose one of "
                         f"{list(REGISTRY)}") from None


def model_class(name: str) -> type:
    """The `Method` subclass that builds method ``name``."""
    module, _, cls = get_method(name).model.partition(":")
    return getattr(importlib.import_module(module), cls)
