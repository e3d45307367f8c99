"""setup.cfg's version ranges agree with the two environments that test them (README, "Versions"):
requirements/lowest.txt pins each direct dependency at its range's lower bound (`make test-lowest`),
requirements/lock.txt pins every package inside the ranges (`make test`, `make demo`)."""

from __future__ import annotations

import configparser
import os
import re

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO


def _requirements(text: str) -> list[Requirement]:
    return [Requirement(line.split("#")[0].strip()) for line in text.splitlines()
            if line.split("#")[0].strip()]


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    return parser


def _pins(name: str) -> dict[str, str]:
    """package -> exact version of requirements/<name>.txt."""
    with open(os.path.join(REPO, "requirements", name)) as f:
        requirements = _requirements(f.read())
    pins = {}
    for req in requirements:
        (spec,) = req.specifier
        assert spec.operator == "==", f"{name}: {req} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


INSTALL_REQUIRES = _requirements(_setup_cfg()["options"]["install_requires"])
EXTRAS = {extra: _requirements(text) for extra, text in _setup_cfg()["options.extras_require"].items()}


@pytest.mark.parametrize("req", INSTALL_REQUIRES, ids=str)
def test_each_lower_bound_is_the_lowest_environment_pin(req):
    lower = [s.version for s in req.specifier if s.operator == ">="]
    assert len(lower) == 1, f"setup.cfg: {req} needs one tested lower bound (>=)"
    assert _pins("lowest.txt").get(canonicalize_name(req.name)) == lower[0], (
        f"requirements/lowest.txt must pin {req.name}=={lower[0]}, the lower bound setup.cfg declares")


@pytest.mark.parametrize("req", INSTALL_REQUIRES + EXTRAS["test"], ids=str)
def test_the_lock_lies_inside_every_range(req):
    locked = _pins("lock.txt").get(canonicalize_name(req.name))
    assert locked is not None, f"requirements/lock.txt has no pin of {req.name}"
    assert req.specifier.contains(locked, prereleases=True), f"lock {req.name}=={locked} is outside setup.cfg's {req}"
    lowest = _pins("lowest.txt").get(canonicalize_name(req.name))
    if lowest is not None:
        assert req.specifier.contains(lowest, prereleases=True), f"lowest {req.name}=={lowest} is outside {req}"


def test_the_cuda_extras_are_jax_s_own_in_the_same_range():
    (jax,) = [r for r in INSTALL_REQUIRES if r.name == "jax"]
    for cuda in ("cuda12", "cuda13"):
        (req,) = EXTRAS[cuda]
        assert req.name == "jax" and req.extras == {cuda} and req.specifier == jax.specifier


def test_jax2onnx_installed_without_its_dependencies_is_the_locked_one():
    with open(os.path.join(REPO, "Makefile")) as f:
        (pin,) = re.findall(r"^JAX2ONNX := jax2onnx==(\S+)$", f.read(), re.MULTILINE)
    assert _pins("lock.txt")["jax2onnx"] == pin
