"""Published numbers, as data, each with where it comes from (docs/reference.md §2.9, §3.4, §4.1, §4.4).

Values are percentages as printed (sources that print fractions, e.g. `.984`, are written as 98.4).
Metric names are ours, so a published number sits beside the metric it was computed with:
the "PRO"/"AUPRO" that RD4AD, SK-RD4AD and the RGPKD repository publish is the RD4AD code's per-image
variant, i.e. our `aupro_rd4ad_per_image`, never the official `aupro` (docs/reference.md §5.2). No source
publishes the official MVTec AU-PRO for these methods, so that column has no published value.

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

from rgpkd_jax.models import list_methods

IMAGE_AUROC = "image_auroc"
PIXEL_AUROC = "pixel_auroc"
PER_IMAGE_AUPRO = "aupro_rd4ad_per_image"

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
    primary: bool        # shown beside our numbers (one primary per method and dataset)
    source: str          # where exactly it was read
    caveat: str
    values: dict         # metric -> {scope: percent}


# MVTec AD's categories in the order the RD4AD paper's table lists them, for `by_scope`.
MVTEC_ORDER = ("carpet", "grid", "leather", "tile", "wood", "bottle", "cable", "capsule", "hazelnut",
               "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper")


def by_scope(scopes, column) -> dict:
    """{scope: value} of a table's column given in the order of `scopes`."""
    return dict(zip(scopes, column, strict=True))


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


def references(*, method: str | None = None, dataset: str | None = None,
               primary: bool | None = None) -> list[Reference]:
    """The references matching every given field."""
    return [r for r in _all()
            if (method is None or r.method == method) and (dataset is None or r.dataset == dataset)
            and (primary is None or r.primary == primary)]
