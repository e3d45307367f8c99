"""rgpkd_jax: knowledge-distillation anomaly detection (RD4AD, SK-RD4AD, RGPKD) in JAX/Flax NNX."""

__version__ = "0.1.0"
