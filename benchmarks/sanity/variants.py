"""The sanity check's rows: every registered method as its config file has it, a baseline with no
student, and RGPKD's ablations (`benchmarks.ablations`) and recipes (docs/rgpkd.md "Sanity check").

A newly registered method (registry + `configs/<name>.py`) is a row without a change here.
"""

from __future__ import annotations

import dataclasses

from benchmarks import ablations, common_flags
from rgpkd_jax.models import get_method, list_methods

# The baseline has no student: it needs a teacher and the map's settings, which RD4AD's config gives.
BASELINE_CONFIG = "rd4ad"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    config: str                      # configs/<config>.py
    overrides: tuple[str, ...] = ()
    description: str = ""
    kind: str = "train"              # "train", or "mean_feature": no student (run.run_mean_feature)


_OLD_RECIPE = ("train.learning_rate=0.001", "train.b1=0.9", "train.schedule=warmup_linear_decay",
               "train.warmup_epochs=2")
_TEACHER_ENCODER = ("model.student_encoder=teacher",)
# RGPKD's recipes and widths tried in the sanity check, beside its switches.
_RGPKD_RECIPES = (
    ablations.Ablation("issue_run", ("model.base_width=32",) + _OLD_RECIPE, "the issue's run: width 32 and the "
                       "first recipe (Adam 1e-3, b1 0.9, warm-up 2 epochs, linear decay to 0)"),
    ablations.Ablation("old_recipe", _OLD_RECIPE, "default with the first recipe"),
    ablations.Ablation("lr1e-3", ("train.learning_rate=0.001",), "default with Adam 1e-3 (b1 0.5, constant)"),
    ablations.Ablation("warmup_decay", ("train.schedule=warmup_linear_decay", "train.warmup_epochs=2"),
                       "default with Adam 5e-3, warm-up 2 epochs then linear decay to 0"),
)
_RGPKD_STUDENTS = (
    ablations.Ablation("width32", ("model.base_width=32",), "encoder widths 32..256"),
    ablations.Ablation("teacher_encoder", _TEACHER_ENCODER,
                       "encoder side = the frozen teacher into RD4AD's OCBE bottleneck, SK-RD4AD skips"),
    ablations.Ablation("teacher_encoder+width32", _TEACHER_ENCODER + ("model.base_width=32",),
                       "teacher encoder side, decoder widths 128/64/32"),
    ablations.Ablation("teacher_encoder+no_skips", _TEACHER_ENCODER + ("model.skips=False",),
                       "teacher encoder side, no skips: the decoder sees the bottleneck only"),
)


def _all() -> tuple[Variant, ...]:
    methods = [Variant(name, name, (), f"{get_method(name).title}: configs/{name}.py as it is "
                                       f"({get_method(name).source})") for name in list_methods()]
    baseline = Variant("mean_teacher_feature", BASELINE_CONFIG, (), "no student: every position gets the mean "
                       "teacher feature of the training images at its level, where an underfit student's outputs "
                       "tend to", "mean_feature")
    rgpkd = [Variant(a.label, ablations.METHOD, a.overrides, a.description)
             for a in (*_RGPKD_RECIPES, *ablations.SWITCHES, *_RGPKD_STUDENTS)]
    return (*methods, baseline, *rgpkd)


VARIANTS = _all()
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def select(names) -> list[Variant]:
    """The variants named, in the order given; a one-line error naming --variants otherwise."""
    common_flags.check_choices("variants", names, VARIANT_NAMES)
    by_name = {v.name: v for v in VARIANTS}
    return [by_name[n] for n in names]
