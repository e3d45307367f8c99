"""rgpkd_jax: knowledge-distillation anomaly detection (RD4AD, SK-RD4AD, RGPKD) in JAX/Flax NNX."""

import os
from pathlib import Path

__version__ = "0.1.0"


def cache_dir() -> Path:
    """Where converted weights and compiled programs are kept: ``$RGPKD_JAX_CACHE`` or
    ``~/.cache/rgpkd_jax``."""
    return Path(os.environ.get("RGPKD_JAX_CACHE") or "~/.cache/rgpkd_jax").expanduser().absolute()
