"""Times the official AU-PRO (and the other metrics) on random 256x256 test sets.

    python -m benchmarks.aupro_timing --num_images 150 1000 --repeats 3

Masks are MVTec-like: a third of the images good, the others with one to three elliptic defects
of 0.1-5 % of the image; maps are smooth noise plus a signal on the defects, in float32.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.ndimage

from rgpkd_jax.metrics import aupro, auroc


def make_test_set(num_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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
    return maps.astype(np.float32), masks


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, nargs="+", default=[150, 1000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for n in args.num_images:
        maps, masks = make_test_set(n, args.size, seed=n)
        print(f"{n} images {args.size}x{args.size} ({maps.size / 1e6:.1f}M pixels, "
              f"{int(masks.sum()) / masks.size:.2%} defective), best of {args.repeats}:")
        for name, fn in [
                ("official AU-PRO (exact, FPR 0.3)", lambda: aupro.aupro(maps, masks)),
                ("RD4AD per-image AUPRO", lambda: aupro.aupro_rd4ad_per_image(maps, masks)),
                ("pixel AUROC", lambda: auroc.roc_auc(maps, masks))]:
            print(f"  {name:34s} {best_of(args.repeats, fn):7.2f} s", flush=True)


if __name__ == "__main__":
    main()
