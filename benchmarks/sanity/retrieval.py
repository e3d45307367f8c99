"""How often a unified RGPKD model's prompt comes from the image's own category (issue 22): the
fraction of top-1 retrievals, on each category's test images as at test time (no exclusion), whose
bank entry belongs to that category, beside chance (the category's share of the bank)."""

from __future__ import annotations

import jax
import numpy as np

from rgpkd_jax.data.unified import UnionSource
from rgpkd_jax.models.prompt import PromptMemory


def same_category_fraction(prompts: PromptMemory, query_deepest: dict[str, jax.Array], union: UnionSource) -> dict:
    """Per category and overall: the fraction of top-1 retrievals from the query's own category,
    ``chance`` (what a uniformly random bank entry would give) and the number of images.

    ``query_deepest`` maps each category to its test images' teacher F3 (B, H, W, C); a bank entry's
    category is its dataset index (a union index in a unified run) looked up in ``union``'s offsets."""
    entry_categories = union.category_of(np.asarray(prompts.entry_indices[...]))
    per_category = {}
    for category, deepest in query_deepest.items():
        positions, _ = prompts.retrieve(deepest, top_k=1)
        same = entry_categories[np.asarray(positions)[:, 0]] == category
        per_category[category] = {"fraction": float(same.mean()), "chance": float(np.mean(entry_categories == category)),
                                  "images": int(same.size)}
    images = sum(p["images"] for p in per_category.values())
    overall = {key: sum(p[key] * p["images"] for p in per_category.values()) / images for key in ("fraction", "chance")}
    return {"per_category": per_category, "overall": {**overall, "images": images}}
