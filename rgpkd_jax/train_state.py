"""What a train step carries: the trained state apart from what training never changes.

`split` cuts ``{'model', 'optimizer'}`` into ``state`` (trained parameters, the student's BN
statistics, the optimiser: what the step donates and returns, and what a checkpoint holds) and
``frozen`` (`models.NOT_TRAINED`: the teacher and the method's ``Frozen`` state, only read);
`merge` puts them back together (docs/architecture.md "Memory").
"""

from __future__ import annotations

from flax import nnx

from rgpkd_jax import optim
from rgpkd_jax.models import NOT_TRAINED, TRAINABLE


def split(model, tc, schedule):
    """(graphdef, state, frozen) of ``model`` and an optimiser of ``TRAINABLE`` by ``tc``
    (``config.train``) with ``schedule``."""
    optimizer = nnx.Optimizer(model, optim.make_optimizer(tc, schedule), wrt=TRAINABLE)
    graphdef, frozen, state = nnx.split({"model": model, "optimizer": optimizer}, NOT_TRAINED, ...)
    return graphdef, state, frozen


def merge(graphdef, state, frozen) -> dict:
    """{'model', 'optimizer'} from `split`'s parts."""
    return nnx.merge(graphdef, frozen, state)


def trained(nodes: dict):
    """The ``state`` part of `split` of merged nodes (what a train step returns)."""
    return nnx.state(nodes, nnx.Not(NOT_TRAINED))
