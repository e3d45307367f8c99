"""Random inputs of the benchmarks: images, and MVTec-like test sets of maps, masks and labels.

Timings do not depend on the values, so every benchmark runs on these instead of real data.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) float32 standard normal images (NHWC)."""
    return np.random.default_rng(seed).standard_normal((n, size, size, 3), dtype=np.float32)


def anomaly_test_set(num_images: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps, masks, labels). Masks are MVTec-like: a third of the images good, the others with one
    to three elliptic defects of 0.1-5 % of the image; maps are smooth noise plus a signal on the
    defects, in float32; labels are 1 where the mask has a defect."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((num_images, size, size), dtype=np.float32)
    for mask in masks[num_images // 3:]:
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, size, 2)
            ry, rx = rng.uniform(0.02, 0.12, 2) * size
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    coarse = rng.normal(size=(num_images, size // 16, size // 16)).astype(np.float32)
    smooth = scipy.ndimage.zoom(coarse, (1, 16, 16), order=1)
    maps = smooth + 0.1 * rng.normal(size=masks.shape).astype(np.float32) + 1.5 * masks
    labels = masks.reshape(num_images, -1).max(axis=1).astype(np.int32)
    return maps.astype(np.float32), masks, labels
