"""What the two-pass BN variance costs: RD4AD's training gradient with the library's batch
statistics (`conv_ops._moments`, two passes) against the same step with the one-pass
E[x^2] - E[x]^2 it replaced (issue 25, item 10; docs/architecture.md, "Numerics: float32
gradients"), timed in interleaved rounds on this machine.

    python -m benchmarks.speed.bn_variance --arch=resnet18 --image_size=128 --batch_size=8

Only ``conv_impl="cpu"`` is timed (the hand-written BN, whose statistics `_moments` computes);
the "xla" layers' two-pass variance is flax's ``use_fast_variance=False``, not measured here.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from absl import flags
from flax import nnx

from benchmarks import common_flags
from benchmarks.speed import timing
from rgpkd_jax import cli
from rgpkd_jax.models import conv_ops
from rgpkd_jax.models.rd4ad import RD4AD


def one_pass_moments(x):
    """The statistics before issue 25: mean and E[x^2] - E[x]^2, one fused reduction."""
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x, axes)
    return mean, jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)


@contextlib.contextmanager
def _moments(function):
    saved = conv_ops._moments
    conv_ops._moments = function
    try:
        yield
    finally:
        conv_ops._moments = saved


def compiled_gradient(arch: str, image_size: int, batch_size: int):
    """(compiled value-and-gradient of RD4AD's loss over its whole state, its argument), compiled
    under the `_moments` in force."""
    model = RD4AD(arch, rngs=nnx.Rngs(0), ops=conv_ops.resolve("cpu"))
    images = jax.random.normal(jax.random.key(0), (batch_size, image_size, image_size, 3))
    graphdef, state = nnx.split(model)

    def loss(state):
        m = nnx.merge(graphdef, state)
        return m.loss(m(images, train=True), images)[0]

    return jax.jit(jax.value_and_grad(loss)).lower(state).compile(), state


def define_flags() -> None:
    flags.DEFINE_string("arch", "resnet18", "Teacher architecture of the RD4AD timed.")
    flags.DEFINE_integer("image_size", 128, "Image side in pixels.")
    flags.DEFINE_integer("batch_size", 8, "Images per step.")
    flags.DEFINE_integer("repeats", 7, "Timed rounds.")
    flags.DEFINE_integer("warmup", 1, "Untimed rounds.")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    cases = {}
    for name, moments in (("one-pass (before)", one_pass_moments), ("two-pass (library)", conv_ops._moments)):
        with _moments(moments):
            step, state = compiled_gradient(f.arch, f.image_size, f.batch_size)
        cases[name] = lambda step=step, state=state: step(state)
    seconds = timing.interleaved(cases, warmup=f.warmup, repeats=f.repeats, alternate=True)
    before = timing.median(seconds["one-pass (before)"])
    print(f"RD4AD-{f.arch} {f.image_size} px, batch {f.batch_size}, conv_impl cpu, "
          f"median of {f.repeats} interleaved rounds:")
    for name, times in seconds.items():
        print(f"  {name:20s} {timing.median(times):7.3f} s  ({timing.median(times) / before:.3f}x)")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
