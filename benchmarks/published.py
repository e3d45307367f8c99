"""Published numbers, as data, each with where it comes from (docs/reference.md §2.9, §3.4, §4.1, §4.4).

Values are percentages as printed (sources that print fractions, e.g. `.984`, are written as 98.4).
Metric names are ours, so a published number sits beside the metric it was computed with:
the "PRO"/"AUPRO" that RD4AD, SK-RD4AD and the RGPKD repository publish is the RD4AD code's per-image
variant, i.e. our `aupro_rd4ad_per_image`, never the official `aupro` (docs/reference.md §5.2). No source
publishes the official MVTec AU-PRO for these methods, so that column has no published value.

Scopes: a category name, `mean` (over all the dataset's categories), or `mean/<group>` for the
sub-means in `GROUPS`.
"""

from __future__ import annotations

import dataclasses

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


_MVTEC_ORDER = ("carpet", "grid", "leather", "tile", "wood", "bottle", "cable", "capsule", "hazelnut",
                "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper")


def _by_scope(scopes, column):
    return dict(zip(scopes, column, strict=True))


REFERENCES = (
    Reference(
        key="rd4ad_paper", title="RD4AD paper (Deng & Li, CVPR 2022), Tables 1-2, WRN50-2",
        method="rd4ad", dataset="mvtec_ad", primary=True,
        source="docs/reference.md §2.9 (paper tables as recalled; per-class values reproduce the published "
               "means exactly; carpet, bottle, hazelnut, leather, cable confirmed by SK-RD4AD READMEs)",
        caveat="PRO is the RD4AD code's per-image AUPRO; the code selects nothing on test data but "
               "evaluates the test set every 10 epochs",
        values={
            IMAGE_AUROC: {**_by_scope(_MVTEC_ORDER, (98.9, 100.0, 100.0, 99.3, 99.2, 100.0, 95.0, 96.3, 99.9,
                                                     100.0, 96.6, 97.0, 99.5, 96.7, 98.5)),
                          "mean": 98.5, "mean/textures": 99.5, "mean/objects": 98.0},
            PIXEL_AUROC: {**_by_scope(_MVTEC_ORDER, (98.9, 99.3, 99.4, 95.6, 95.3, 98.7, 97.4, 98.7, 98.9,
                                                     97.3, 98.2, 99.6, 99.1, 92.5, 98.2)),
                          "mean": 97.8},
            PER_IMAGE_AUPRO: {**_by_scope(_MVTEC_ORDER, (97.0, 97.6, 99.1, 90.6, 90.9, 96.6, 91.0, 95.8, 95.5,
                                                         92.3, 96.4, 98.2, 94.5, 78.0, 95.4)),
                              "mean": 93.9},
        }),
    Reference(
        key="anomalib_rd", title="anomalib ReverseDistillation benchmark (README), WRN50-2",
        method="rd4ad", dataset="mvtec_ad", primary=False,
        source="docs/reference.md §2.9 secondary reference: anomalib README @ 161bb36 (seed 42, batch 16; "
               "printed as fractions)",
        caveat="anomalib deviates from the official code (docs/reference.md §6)",
        values={
            IMAGE_AUROC: {**_by_scope(_MVTEC_ORDER, (98.4, 100.0, 100.0, 100.0, 99.7, 100.0, 96.6, 97.4, 100.0,
                                                     100.0, 97.2, 98.5, 95.3, 97.0, 97.8)),
                          "mean": 98.5},
            PIXEL_AUROC: {**_by_scope(_MVTEC_ORDER, (98.8, 99.2, 99.1, 95.4, 94.7, 98.4, 96.4, 98.7, 98.8,
                                                     96.9, 97.5, 99.6, 99.1, 89.3, 98.4)),
                          "mean": 96.9},
        }),
    Reference(
        key="rgpkd_repo_result_test",
        title="RGPKD repository Result_test.csv: a WRN50 RD-style model, NOT RGPKD",
        method="rd4ad", dataset="mvtec_ad", primary=False,
        source="docs/reference.md §4.4: Cariaaaaaa/RGPKD Result_test.csv (blob 808239c) from test.py @ 4fe7741, "
               "which evaluates WRN50 + OCBE + RD decoder from ./checkpoints/Best.pth (printed as fractions)",
        caveat="unknown training; one checkpoint evaluated on every class; AUPRO is the per-image "
               "variant; the means given in docs/reference.md §4.4 are inferred, so none are listed",
        values={
            PIXEL_AUROC: {"carpet": 99.0, "bottle": 98.1, "hazelnut": 98.9, "leather": 99.5, "cable": 80.4,
                          "capsule": 97.4, "grid": 98.5, "pill": 96.9, "transistor": 83.1, "metal_nut": 94.4,
                          "screw": 98.7, "toothbrush": 99.0, "zipper": 96.8, "tile": 95.0, "wood": 95.4},
            IMAGE_AUROC: {"carpet": 96.0, "bottle": 99.7, "hazelnut": 100.0, "leather": 100.0, "cable": 87.0,
                          "capsule": 80.3, "grid": 97.1, "pill": 89.6, "transistor": 90.1, "metal_nut": 99.4,
                          "screw": 87.0, "toothbrush": 99.4, "zipper": 96.0, "tile": 99.3, "wood": 98.5},
            PER_IMAGE_AUPRO: {"carpet": 96.8, "bottle": 95.0, "hazelnut": 95.2, "leather": 98.9, "cable": 78.6,
                              "capsule": 92.9, "grid": 96.3, "pill": 94.4, "transistor": 68.5,
                              "metal_nut": 91.3, "screw": 94.7, "toothbrush": 93.4, "zipper": 92.3,
                              "tile": 85.8, "wood": 92.1},
        }),
    Reference(
        key="sk_rd4ad_readme", title="SK-RD4AD README (pej0918/SK-RD4AD)",
        method="sk_rd4ad", dataset="mvtec_ad", primary=True,
        source="docs/reference.md §3.4: pej0918/SK-RD4AD README.md (blob 542f448) @ 21bd280; only four "
               "classes and the 15-class mean are published",
        caveat="AUPRO is the per-image variant; checkpoint selection undocumented (test-set maxima likely); "
               "no image AUROC published",
        values={
            PIXEL_AUROC: {"carpet": 99.2, "bottle": 98.8, "hazelnut": 99.1, "leather": 99.6, "mean": 98.06},
            PER_IMAGE_AUPRO: {"carpet": 97.7, "bottle": 96.9, "hazelnut": 96.2, "leather": 99.2, "mean": 94.69},
        }),
    Reference(
        key="sk_rd4ad_dev_readme", title="SK-RD4AD earlier dev README (2024-Hanium-Anomaly-Dection/SK-RD4AD)",
        method="sk_rd4ad", dataset="mvtec_ad", primary=False,
        source="docs/reference.md §3.4: readme.md (blob 348884e) in the Hanium history @ 8c2971b",
        caveat="an earlier run; AUPRO is the per-image variant",
        values={
            PIXEL_AUROC: {"cable": 97.4, "mean": 97.91},
            PER_IMAGE_AUPRO: {"cable": 90.7, "mean": 94.33},
        }),
    Reference(
        key="sk_rd4ad_readme_visa", title="SK-RD4AD README, VisA table",
        method="sk_rd4ad", dataset="visa", primary=True,
        source="docs/reference.md §3.4: pej0918/SK-RD4AD README.md (blob 542f448) @ 21bd280",
        caveat="AUPRO code for VisA is missing from the repository (protocol assumed per-image)",
        values={
            PIXEL_AUROC: {"pcb1": 99.6, "pcb2": 98.3, "pcb3": 98.3, "pcb4": 98.6, "pipe_fryum": 99.1,
                          "candle": 98.6, "capsules": 99.1, "cashew": 98.1, "chewinggum": 97.7, "fryum": 96.7,
                          "macaroni1": 99.3, "macaroni2": 99.3, "mean": 98.5},
            PER_IMAGE_AUPRO: {"pcb1": 93.7, "pcb2": 89.2, "pcb3": 90.3, "pcb4": 89.0, "pipe_fryum": 94.8,
                              "candle": 93.9, "capsules": 91.9, "cashew": 87.3, "chewinggum": 94.3,
                              "fryum": 90.3, "macaroni1": 95.5, "macaroni2": 95.2, "mean": 92.1},
        }),
    Reference(
        key="rd4ad_visa_per_sk_readme", title="RD4AD on VisA as given by the SK-RD4AD README",
        method="rd4ad", dataset="visa", primary=True,
        source="docs/reference.md §3.4: RD4AD column of the SK-RD4AD README VisA table; RD4AD itself "
               "publishes no VisA numbers (§2.7)",
        caveat="provenance unknown; the pixel-AUROC mean 97.8 does not match its rows (they average 98.3, "
               "it looks copied from MVTec); AUPRO values of 43-46 on pcb1/2 suggest a different AUPRO "
               "implementation from the SK column",
        values={
            PIXEL_AUROC: {"pcb1": 99.6, "pcb2": 98.3, "pcb3": 99.3, "pcb4": 98.2, "pipe_fryum": 99.1,
                          "candle": 98.9, "capsules": 99.4, "cashew": 94.4, "chewinggum": 97.6, "fryum": 96.4,
                          "macaroni1": 99.3, "macaroni2": 99.1, "mean": 97.8},
            PER_IMAGE_AUPRO: {"pcb1": 43.2, "pcb2": 46.4, "pcb3": 80.3, "pcb4": 72.2, "pipe_fryum": 68.3,
                              "candle": 92.2, "capsules": 56.9, "cashew": 79.0, "chewinggum": 92.5,
                              "fryum": 81.0, "macaroni1": 71.9, "macaroni2": 68.0, "mean": 70.9},
        }),
    Reference(
        key="rgpkd_readme_claim", title="RGPKD README claim (unverifiable)",
        method="rgpkd", dataset="mvtec_ad", primary=True,
        source="docs/reference.md §4.1: Cariaaaaaa/RGPKD README.md (blob 1677422) @ 7fcf649",
        caveat="no training code, no checkpoints, no paper text; the sub-means imply 99.7, not 99.8; "
               "our RGPKD is an interpretation (docs/rgpkd.md)",
        values={IMAGE_AUROC: {"mean": 99.8, "mean/textures": 99.9, "mean/objects": 99.6}}),
)


def references(*, method: str | None = None, dataset: str | None = None,
               primary: bool | None = None) -> list[Reference]:
    """The references matching every given field."""
    return [r for r in REFERENCES
            if (method is None or r.method == method) and (dataset is None or r.dataset == dataset)
            and (primary is None or r.primary == primary)]
