"""The sanity check's data: the embedded synthetic dataset's splits, decoded once and kept in memory
(the splits are 101 images), the unified setting's union of several categories' training splits,
and in-memory training batches shuffled as the pipeline shuffles."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from rgpkd_jax import files
from rgpkd_jax.data import pipeline, preprocess, unified
from rgpkd_jax.deploy.images import to_uint8


def load_split(config, split: str, arrays_dir: str) -> dict[str, np.ndarray]:
    """The split's images (normalised, as the pipeline makes them), masks, labels and indices.

    Decoded once through the pipeline and kept in ``arrays_dir`` as uint8 (the pipeline's images
    are uint8 / 255, normalised, so they are rebuilt exactly)."""
    size = config.dataset.image_size
    path = os.path.join(arrays_dir, f"synthetic_{config.dataset.category}_{size}_{split}.npz")
    if not os.path.exists(path):
        parts: dict[str, list] = {}
        for batch in pipeline.test_batches(config, batch_size=32, split=split):
            parts.setdefault("image", []).append(to_uint8(batch["image"]))
            for key in ("mask", "label", "index"):
                parts.setdefault(key, []).append(np.asarray(batch[key]))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        arrays["mask"] = (arrays["mask"] > 0.5).astype(np.uint8)
        os.makedirs(arrays_dir, exist_ok=True)
        with files.atomic_write(path, "wb") as f:
            np.savez_compressed(f, **arrays)
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    arrays["image"] = np.stack([preprocess.preprocess_image(Image.fromarray(u), size) for u in arrays["image"]])
    arrays["mask"] = arrays["mask"].astype(np.float32)
    return arrays


def union_split(train_splits: dict[str, dict]) -> tuple[dict[str, np.ndarray], unified.UnionSource]:
    """The categories' training splits one after another, as `unified.UnionSource` joins them: each
    image's ``index`` becomes its union index (its category's offset + its index there), so RGPKD's
    bank entries map back to their category through the returned union's offsets."""
    categories = list(train_splits)
    union = unified.UnionSource([train_splits[c]["image"] for c in categories], categories)
    for category in categories:
        if not np.array_equal(np.sort(train_splits[category]["index"]), np.arange(len(train_splits[category]["index"]))):
            raise ValueError(f"synthetic/{category}: training indices are not 0..N-1; delete the cached arrays "
                             "(--arrays_dir) and rerun")
    arrays = {"image": np.concatenate([train_splits[c]["image"] for c in categories]),
              "index": np.concatenate([train_splits[c]["index"] + offset
                                       for c, offset in zip(categories, union.offsets)])}
    return arrays, union


def epoch_batches(train_data: dict, epochs: int, batch_size: int, seed: int):
    """In-memory batches: a fresh permutation per epoch, the last partial batch dropped (as the
    pipeline does)."""
    rng = np.random.default_rng(seed)
    num_train = len(train_data["image"])
    for _ in range(epochs):
        order = rng.permutation(num_train)
        for b in range(num_train // batch_size):
            chosen = order[b * batch_size:(b + 1) * batch_size]
            yield {"image": jnp.asarray(train_data["image"][chosen]), "index": jnp.asarray(train_data["index"][chosen])}
