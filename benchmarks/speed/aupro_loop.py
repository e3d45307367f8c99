"""The reference of the speed benchmark's AU-PRO rows: RD4AD's per-image AUPRO as its code computes it.

A threshold loop (docs/reference.md §2.6), kept apart from the library's fast `aupro_rd4ad_per_image`
so that the benchmark times the two against each other and checks they agree.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage


def threshold_loop_aupro(maps: np.ndarray, masks: np.ndarray, *, fpr_limit: float = 0.3,
                         num_thresholds: int = 200, label_once: bool = False) -> float:
    """RD4AD's per-image AUPRO written the way its `compute_pro` computes it (docs/reference.md §2.6).

    Per defective image: for each of 200 thresholds from the map's min to max, binarise the map;
    label the ground truth's 8-connected regions and, region by region (its pixel coordinates, as
    skimage's `regionprops` gives them), take the fraction above the threshold; PRO is their
    mean, FPR the fraction of the image's normal pixels above it. Keep FPR < limit, divide FPR by
    its largest kept value, trapezoid; mean over images. The official code labels the regions
    again at every threshold; `label_once=True` hoists that out of the loop (a kinder baseline).
    """
    def regions_of(mask):
        labelled, _ = scipy.ndimage.label(mask, structure=np.ones((3, 3), bool))
        return [np.argwhere(labelled[box] == k) + [box[0].start, box[1].start]
                for k, box in enumerate(scipy.ndimage.find_objects(labelled), start=1)]

    values = []
    for amap, mask in zip(maps, masks.astype(bool)):
        if not mask.any():
            continue
        regions = regions_of(mask) if label_once else None
        normal = ~mask
        low, high = amap.min(), amap.max()
        pros, fprs = [], []
        for threshold in np.arange(low, high, (high - low) / num_thresholds):
            binary = amap > threshold
            pros.append(np.mean([binary[c[:, 0], c[:, 1]].sum() / len(c)
                                 for c in (regions if label_once else regions_of(mask))]))
            fprs.append((binary & normal).sum() / normal.sum())
        fprs, pros = np.asarray(fprs), np.asarray(pros)
        keep = fprs < fpr_limit
        if keep.sum() >= 2 and fprs[keep].max() > 0:
            values.append(abs(np.trapezoid(pros[keep], fprs[keep] / fprs[keep].max())))
    return float(np.mean(values))
