"""Optimisers and learning-rate schedules named by ``config.train`` (optimizer, schedule, warm-up)."""

from __future__ import annotations

import ml_collections
import optax


def make_schedule(tc: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
    lr = tc.learning_rate
    warmup = int(round(tc.warmup_epochs * steps_per_epoch))
    if tc.schedule == "constant":
        return optax.constant_schedule(lr)
    if tc.schedule == "warmup_linear_decay":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, max(warmup, 1)),
             optax.linear_schedule(lr, 0.0, max(total_steps - warmup, 1))], [max(warmup, 1)])
    if tc.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total_steps, warmup + 1))
    raise ValueError(f"unknown train.schedule {tc.schedule!r}; use constant, warmup_linear_decay or warmup_cosine")


def make_optimizer(tc: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    if tc.optimizer == "adam":
        # optax adds eps outside the square root, as PyTorch's Adam does.
        tx = optax.adam(schedule, b1=tc.b1, b2=tc.b2, eps=tc.eps)
        return optax.chain(optax.add_decayed_weights(tc.weight_decay), tx) if tc.weight_decay else tx
    if tc.optimizer == "adamw":
        return optax.adamw(schedule, b1=tc.b1, b2=tc.b2, eps=tc.eps, weight_decay=tc.weight_decay)
    if tc.optimizer == "sgd":
        tx = optax.sgd(schedule, momentum=tc.momentum)
        return optax.chain(optax.add_decayed_weights(tc.weight_decay), tx) if tc.weight_decay else tx
    raise ValueError(f"unknown train.optimizer {tc.optimizer!r}; use adam, adamw or sgd")
