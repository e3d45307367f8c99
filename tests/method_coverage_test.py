"""Every registered method is tested without touching the tests: cross-method tests parametrize
over the registry (`tests.helpers.METHODS`), and this test fails on any test file that names
methods in a hard-coded list instead (a new method would silently miss those tests), or on a
registered method without its config file and protocol class.

A list that is deliberately a subset (e.g. a test of method selection) carries the comment
``# method subset: <why>`` on its line.
"""

from __future__ import annotations

import ast
import os

import pytest

from rgpkd_jax.config_files import load_config
from rgpkd_jax.models import Method, get_method, list_methods, model_class
from tests.helpers import METHODS, REPO

TESTS = os.path.join(REPO, "tests")
EXEMPT = "# method subset:"


def hard_coded_method_lists(source: str, registered: set[str]) -> list[tuple[int, str]]:
    """(line, what) of each place in ``source`` that names methods by hand: a list, tuple or set
    literal of two or more registered names, or a parametrization of ``method`` over anything
    but ``METHODS``."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(names) >= 2 and len(names) == len(node.elts) and set(names) <= registered:
                found.append((node.lineno, f"the method list {names}"))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "parametrize"
              and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant)
              and "method" in [name.strip() for name in str(node.args[0].value).split(",")]
              and not (isinstance(node.args[1], ast.Name) and node.args[1].id == "METHODS")):
            found.append((node.lineno, f"a parametrization of 'method' over {ast.unparse(node.args[1])}"))
    return sorted({(line, what) for line, what in found if EXEMPT not in lines[line - 1]})


def _test_sources():
    for folder, _, names in os.walk(TESTS):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    yield os.path.relpath(path, REPO), f.read()


def test_no_test_names_methods_by_hand():
    registered = set(list_methods())
    problems = [f"{path}:{line}: {what}; use tests.helpers.METHODS (or mark it '{EXEMPT} <why>')"
                for path, source in _test_sources() for line, what in hard_coded_method_lists(source, registered)]
    assert not problems, "\n".join(problems)


def test_the_scan_finds_hard_coded_lists_and_respects_marked_subsets():
    registered = {"rd4ad", "sk_rd4ad", "rgpkd"}  # method subset: the scan's own example
    source = "\n".join([
        '@pytest.mark.parametrize("method", ["rd4ad", "rgpkd"])',
        '@pytest.mark.parametrize("conv_impl,method", [("xla", "rd4ad")])',
        'def test_a(method, conv_impl): pass',
        'for method in ("rd4ad", "sk_rd4ad", "rgpkd"): pass',
        f'jobs(methods=["rd4ad", "rgpkd"])  {EXEMPT} selection',
        '@pytest.mark.parametrize("method", METHODS)',
        'def test_b(method): pass',
        'x = ["rd4ad", "not_a_method"]',
    ])
    assert sorted({line for line, _ in hard_coded_method_lists(source, registered)}) == [1, 2, 4]


@pytest.mark.parametrize("method", METHODS)
def test_every_registered_method_has_its_config_and_a_protocol_class(method):
    assert issubclass(model_class(method), Method)
    config = load_config(os.path.join(REPO, "configs", f"{method}.py:synthetic/grid,tiny"))
    assert config.method == method
    assert get_method(method).title and get_method(method).source
