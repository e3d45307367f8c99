"""`config.model.remat`: recompute the student decoder's activations in the backward pass.

Without it, the train step keeps every decoder block's intermediate activations alive from the
forward pass to the backward pass; the decoder works at the highest resolutions, so they are most
of the step's memory. With ``decoder`` each decoder block is a `jax.checkpoint` (``nnx.remat``):
only its input is kept and its forward runs again during the backward pass. The values are the
same (the same operations recomputed). It is meant for GPUs and TPUs: XLA:CPU compiles the
recomputation away (common-subexpression elimination merges it with the forward pass), so on the
CPU memory and time stay as without it (measured: benchmarks/NOTES.md, 2026-11-30;
docs/architecture.md "Memory").
"""

from __future__ import annotations

from flax import nnx

REMAT_MODES = ("none", "decoder")


class RematBlocks:
    """Mixin of the modules whose blocks can be rematerialised: ``self.remat`` (set by
    `set_remat`) and `call_block`, which every such module uses to run one of its blocks."""

    remat = False

    def call_block(self, block: nnx.Module, *args, train: bool):
        """``block(*args, train=train)``; in training with ``self.remat``, recomputed in the backward."""
        if not (self.remat and train):
            return block(*args, train=train)
        return nnx.remat(lambda block, *args: block(*args, train=train))(block, *args)

    def run_blocks(self, blocks: nnx.List, x, *, train: bool):
        """The blocks in sequence, each through `call_block`."""
        for block in blocks:
            x = self.call_block(block, x, train=train)
        return x


def set_remat(model: nnx.Module, mode: str) -> None:
    """Sets ``config.model.remat`` on every `RematBlocks` module of ``model``."""
    if mode not in REMAT_MODES:
        raise ValueError(f"unknown config.model.remat {mode!r}; choose one of {REMAT_MODES}")
    for _, module in nnx.iter_modules(model):
        if isinstance(module, RematBlocks):
            module.remat = mode == "decoder"
