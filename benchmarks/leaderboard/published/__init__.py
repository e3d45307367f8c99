"""Published numbers, as data, each with where it comes from (docs/reference.md §2.9, §3.4, §4.1, §4.4, §5.8).

Values are percentages as printed (sources that print fractions, e.g. `.984`, are written as 98.4).
Metric names are ours, so a published number sits beside the metric it was computed with:
the "PRO"/"AUPRO" that RD4AD, SK-RD4AD and the RGPKD repository publish is the RD4AD code's per-image
variant, i.e. our `aupro_rd4ad_per_image`, never the official `aupro` (docs/reference.md §5.2). No
per-category source publishes the official MVTec AU-PRO for these methods; ADer's unified benchmark does,
on a 50-bin score grid (`ADER_CAVEAT`), and it is the only one under `aupro`.

Settings: `per_category` (one model per category, as our runs and the method papers) or `unified`
(one model for every category of a dataset, as the ADer benchmark, docs/reference.md §5.8). A unified
number is never set beside a per-category run: `references(setting=...)` keeps them apart.

Scopes: a category name, `mean` (over all the dataset's categories), or `mean/<group>` for the
sub-means in `GROUPS`.

Each registered method's numbers are one module here, named after it (`rd4ad.py`, ...), holding
its `REFERENCES`; `references()` finds them by listing the package, so adding a method's published
numbers is adding its file.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil

from rgpkd_jax.data import unified
from rgpkd_jax.models import list_methods

IMAGE_AUROC = "image_auroc"
PIXEL_AUROC = "pixel_auroc"
PER_IMAGE_AUPRO = "aupro_rd4ad_per_image"
MAD = "mad"

SETTINGS = unified.SETTINGS  # a model per category, or one for the whole dataset (docs/unified.md)

# The sub-means published tables report (RD4AD Table 1, RGPKD README): MVTec AD textures / objects.
# (Category lists themselves live in the data package: `rgpkd_jax.data.categories(dataset)`.)
GROUPS = {
    "mvtec_ad": {
        "textures": ("carpet", "grid", "leather", "tile", "wood"),
        "objects": ("bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw",
                    "toothbrush", "transistor", "zipper"),
    },
}


@dataclasses.dataclass(frozen=True)
class Reference:
    """One published table: the values of one method on one dataset from one source."""
    key: str
    title: str
    method: str          # the method of ours it is compared with
    dataset: str
    primary: bool        # shown beside our numbers (one primary per method, dataset and setting)
    source: str          # where exactly it was read
    caveat: str
    values: dict         # metric -> {scope: percent}
    setting: str = "per_category"  # one of SETTINGS: a model per category, or one for the whole dataset

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise ValueError(f"published reference {self.key!r}: setting {self.setting!r} is none of {SETTINGS}")


# MVTec AD's categories in the order the RD4AD paper's table lists them, for `by_scope`.
MVTEC_ORDER = ("carpet", "grid", "leather", "tile", "wood", "bottle", "cable", "capsule", "hazelnut",
               "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper")


def by_scope(scopes, column) -> dict:
    """{scope: value} of a table's column given in the order of `scopes`."""
    return dict(zip(scopes, column, strict=True))


# The ADer benchmark (docs/reference.md §5.6, §5.8): its seven columns in its README's order, and the
# categories in the order its logs list them (alphabetical).
ADER_COLUMNS = (IMAGE_AUROC, "image_ap", "image_f1_max", PIXEL_AUROC, "pixel_ap", "pixel_f1_max", "aupro")
ADER_ORDER = {
    "mvtec_ad": ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                 "screw", "tile", "toothbrush", "transistor", "wood", "zipper"),
    "visa": ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
             "pcb3", "pcb4", "pipe_fryum"),
}
ADER_COMMIT = "902937a7ed7fa7689674a4ac9b8fe9a72a40c402"       # zhangzjn/ADer (2025-01-29)
ADER_LOG_COMMIT = "12360dad7a1cec3ae941fb6d5269f500ddefce29"   # zhangzjn/data (2024-10-30): ADer's logs
# (its README's section name, its logs' file name) of each dataset
ADER_NAMES = {"mvtec_ad": ("MVTec AD", "mvtec"), "visa": ("VisA", "visa")}
ADER_CAVEAT = (
    "unified: one model trained on every category at once (not our per-category runs); the model of "
    "the last epoch, evaluated at 256 px, one run (seed 42). Image AUROC/AP/F1-max: sklearn on map maxima, "
    "as ours, but the image label is the resized mask's maximum, not the folder. Pixel AUROC, pixel AP and "
    "AU-PRO come from the ADEval package (1.1.0 read) on a 50-bin histogram of the class's scores: AUROC and "
    "AP (a trapezoid under the PR curve, not sklearn's step sum) are approximations of ours; AU-PRO has the "
    "official definition (regions weighted equally, FPR over all normal pixels, limit 0.3 interpolated, "
    "divided by 0.3) on that coarse grid. Pixel F1-max: 21 thresholds on min-max normalised maps, a lower "
    "bound of ours. mAD: the mean of the seven printed means, so it inherits all of the above "
    "(docs/reference.md §5.6, §5.8)")


def ader_reference(method: str, dataset: str, epochs: int, *, primary: bool, label: str, log_dir: str,
                   rows, mad: float, caveat: str = "") -> Reference:
    """One ADer benchmark row: per category the last table of its log (3 decimals), the means and mAD as
    its README prints them (1 decimal). `rows`: ADER_ORDER[dataset] then the mean, ADER_COLUMNS each."""
    section, stem = ADER_NAMES[dataset]
    log = f"ader_log/{log_dir}/{stem}_{epochs}e.log"
    columns = zip(*rows, strict=True)
    return Reference(
        key=f"ader_{method}_{dataset}_{epochs}e",
        title=f"ADer benchmark {label}, unified, WRN50-2, 256 px, {epochs} epochs",
        method=method, dataset=dataset, primary=primary, setting="unified",
        source=f"means and mAD: zhangzjn/ADer @ {ADER_COMMIT} configs/benchmark/README.md, "
               f"{section}-{epochs}epochs, row {label}; per category: the last "
               f"(epoch {epochs}) table of zhangzjn/data @ {ADER_LOG_COMMIT} {log}, the log that row links",
        caveat="; ".join(filter(None, (ADER_CAVEAT, caveat))),
        values={**{metric: by_scope(ADER_ORDER[dataset] + ("mean",), column)
                   for metric, column in zip(ADER_COLUMNS, columns, strict=True)},
                MAD: {"mean": mad}})


@functools.cache
def _all() -> tuple[Reference, ...]:
    """Every module of this package: its REFERENCES, in the registry's order of methods."""
    found = []
    for module_info in pkgutil.iter_modules(__path__):
        method = module_info.name
        if method not in list_methods():
            raise ValueError(f"{__name__}.{method}: a file of published numbers is named after the registered "
                             f"method it stands beside; {method!r} is none of {list(list_methods())}")
        module = importlib.import_module(f"{__name__}.{method}")
        strays = [r.key for r in module.REFERENCES if r.method != method]
        if strays:
            raise ValueError(f"{module.__name__}: references {strays} name another method; move them to "
                             "the file of the method they stand beside")
        found.append((list_methods().index(method), module.REFERENCES))
    return tuple(ref for _, refs in sorted(found, key=lambda item: item[0]) for ref in refs)


def references(*, method: str | None = None, dataset: str | None = None, primary: bool | None = None,
               setting: str | None = None) -> list[Reference]:
    """The references matching every given field."""
    return [r for r in _all()
            if (method is None or r.method == method) and (dataset is None or r.dataset == dataset)
            and (primary is None or r.primary == primary) and (setting is None or r.setting == setting)]
