"""The shared timing and flop-count helpers, and the rule that importing a benchmark defines no flags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import timing
from tests.helpers import REPO


def test_gflops_count_a_multiply_add_as_two():
    """XLA's cost analysis, as the benchmarks read it, against the textbook count of a matmul."""
    import jax
    import jax.numpy as jnp
    a, b = jnp.ones((16, 64, 32)), jnp.ones((32, 48))
    compiled = jax.jit(lambda a, b: a @ b).lower(a, b).compile()
    assert timing.gflops_per_image(compiled, batch_size=16) == pytest.approx(2 * 64 * 32 * 48 / 1e9)


def test_interleaved_times_every_case_once_per_round():
    calls = []
    times = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               warmup=1, repeats=2)
    assert calls == ["a", "b"] * 3 and {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    assert timing.rate(10, [1.0, 2.0, 5.0]) == 5.0


def test_importing_the_benchmarks_defines_no_flags():
    """Only a tool run as a program defines its flags, so two tools that share a flag name
    (--tiny, --repeats, --config_dir...) can be imported into one process (a fresh one here, so
    that modules other tests imported already are imported again)."""
    # absl.app and absl.logging define their own flags (--v, --logtostderr...) when imported: first.
    script = ("import importlib, pkgutil; from absl import app, flags, logging; import benchmarks; "
              "before = set(flags.FLAGS); "
              "[importlib.import_module('benchmarks.' + m.name) for m in pkgutil.iter_modules(benchmarks.__path__)]; "
              "print(sorted(set(flags.FLAGS) - before))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
