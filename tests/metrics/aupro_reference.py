"""Slow, obvious implementations of both AUPRO definitions, written from docs/reference.md §5.1 / §2.6.

They share no code with rgpkd_jax.metrics: regions come from a breadth-first flood fill (official)
or skimage (RD4AD's choice), every threshold is a Python loop iteration, and the area is summed
segment by segment.
"""

from __future__ import annotations

import collections

import numpy as np
import skimage.measure
import sklearn.metrics


def regions_8_connected(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """The pixel coordinates of each 8-connected foreground region of a 2-D mask (flood fill)."""
    seen = np.zeros(mask.shape, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, region = collections.deque([start]), []
        while queue:
            y, x = queue.popleft()
            region.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if (0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                            and mask[ny, nx] and not seen[ny, nx]):
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        regions.append(region)
    return regions


def area_up_to(xs: list[float], ys: list[float], limit: float) -> float:
    """Trapezoid area under the polyline (xs, ys) for x in [0, limit], interpolating at limit."""
    area = 0.0
    for x0, x1, y0, y1 in zip(xs[:-1], xs[1:], ys[:-1], ys[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area


def official_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """MVTec AU-PRO: for every distinct score t (descending), a pixel is positive if score >= t;
    FPR over all normal pixels of the set, PRO = mean over all regions of the set of the positive
    fraction; curve from (0, 0) to (1, 1); area up to fpr_limit divided by fpr_limit."""
    masks = masks.astype(bool)
    region_scores = [np.array([maps[i][p] for p in region])
                     for i in range(len(maps)) for region in regions_8_connected(masks[i])]
    normal_scores = maps[~masks]
    xs, ys = [0.0], [0.0]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        xs.append(float(np.mean(normal_scores >= t)))
        ys.append(float(np.mean([np.mean(r >= t) for r in region_scores])))
    xs.append(1.0)
    ys.append(1.0)
    return area_up_to(xs, ys, fpr_limit) / fpr_limit


def rd4ad_image_aupro(amap: np.ndarray, mask: np.ndarray, fpr_limit: float = 0.3,
                      num_thresholds: int = 200) -> float:
    """docs/reference.md §2.6 steps 1-4 for one image, threshold by threshold (crashes where RD4AD does)."""
    low, high = amap.min(), amap.max()
    regions = skimage.measure.regionprops(skimage.measure.label(mask, connectivity=2))
    normal = ~mask.astype(bool)
    fprs, pros = [], []
    for threshold in np.arange(low, high, (high - low) / num_thresholds):
        positive = amap > threshold
        pros.append(np.mean([positive[tuple(r.coords.T)].sum() / r.area for r in regions]))
        fprs.append(np.logical_and(positive, normal).sum() / normal.sum())
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < fpr_limit
    return sklearn.metrics.auc(fprs[keep] / fprs[keep].max(), pros[keep])
