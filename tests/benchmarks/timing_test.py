"""The shared timing and flop-count helpers."""

from __future__ import annotations

import pytest

from benchmarks.speed import timing


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


def test_alternating_rounds_reverse_every_other_round():
    calls = []
    times = timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               warmup=1, repeats=3, alternate=True)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


