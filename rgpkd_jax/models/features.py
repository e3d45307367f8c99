"""What every model returns (docs/architecture.md "Models")."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Features(NamedTuple):
    """What a model returns: paired feature lists, shallow to deep (``teacher[i]`` and
    ``student[i]`` have equal shapes), and the reconstruction (RGPKD) or None."""

    teacher: list[jax.Array]
    student: list[jax.Array]
    reconstruction: jax.Array | None = None

    def at_least_float32(self) -> "Features":
        """The same features in at least float32: losses, anomaly maps and metrics never see
        bfloat16; a float64 model keeps float64."""
        return jax.tree.map(lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32)), self)
