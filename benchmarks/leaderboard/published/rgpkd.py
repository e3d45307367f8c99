"""Published numbers our RGPKD stands beside: the RGPKD README's claim. docs/reference.md §4.1."""

from benchmarks.leaderboard.published import IMAGE_AUROC, Reference

REFERENCES = (
    Reference(
        key="rgpkd_readme_claim", title="RGPKD README claim (unverifiable)",
        method="rgpkd", dataset="mvtec_ad", primary=True,
        source="docs/reference.md §4.1: Cariaaaaaa/RGPKD README.md (blob 1677422) @ 7fcf649",
        caveat="no training code, no checkpoints, no paper text; the sub-means imply 99.7, not 99.8; "
               "our RGPKD is an interpretation (docs/rgpkd.md)",
        values={IMAGE_AUROC: {"mean": 99.8, "mean/textures": 99.9, "mean/objects": 99.6}}),
)
