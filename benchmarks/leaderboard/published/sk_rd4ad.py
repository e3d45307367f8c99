"""Published numbers our SK-RD4AD stands beside: its README (primary, MVTec AD and VisA) and an
earlier development README. docs/reference.md §3.4."""

from benchmarks.leaderboard.published import PER_IMAGE_AUPRO, PIXEL_AUROC, Reference

REFERENCES = (
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
)
