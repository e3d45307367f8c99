"""Installs the repository's configs/ as the package's rgpkd_jax/configs (everything else is in
setup.cfg): `--config configs/<method>.py` then works from any folder (rgpkd_jax.config_files)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["rgpkd_jax", "rgpkd_jax.*"]) + ["rgpkd_jax.configs"],
      package_dir={"rgpkd_jax.configs": "configs"})
