"""Times the official AU-PRO (and the other metrics) on random 256x256 test sets of growing size.

    python -m benchmarks.speed.aupro_timing --num_images=150,1000 --repeats=3

Masks are MVTec-like: a third of the images good, the others with one to three elliptic defects
of 0.1-5 % of the image; maps are smooth noise plus a signal on the defects, in float32
(`inputs.anomaly_test_set`). Each row is the best of `--repeats` calls. The speed
benchmark's aupro section compares the same metrics with a threshold loop and anomalib on a few
maps; this tool shows how ours scale to a full test set.
"""

from __future__ import annotations

from absl import flags

from benchmarks import common_flags
from benchmarks.speed import inputs, timing
from rgpkd_jax import cli
from rgpkd_jax.metrics import aupro, auroc


def time_metrics(num_images: int, size: int, repeats: int) -> tuple[dict, dict[str, float]]:
    """({'pixels', 'defective'} of the test set, {metric: best seconds of `repeats` calls})."""
    maps, masks, _ = inputs.anomaly_test_set(num_images, size, seed=num_images)
    cases = {"official AU-PRO (exact, FPR 0.3)": lambda: aupro.aupro(maps, masks),
             "RD4AD per-image AUPRO": lambda: aupro.aupro_rd4ad_per_image(maps, masks),
             "pixel AUROC": lambda: auroc.roc_auc(maps, masks)}
    seconds = {name: min(timing.seconds_per_call(fn, warmup=0, repeats=repeats)) for name, fn in cases.items()}
    return {"pixels": maps.size, "defective": float(masks.sum()) / masks.size}, seconds


def define_flags() -> None:
    flags.DEFINE_list("num_images", ["150", "1000"], "Test-set sizes, one table each.")
    flags.DEFINE_integer("image_size", 256, "Image side in pixels.")
    flags.DEFINE_integer("repeats", 3, "Calls per metric; the best is reported.")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    for n in common_flags.whole_numbers(f.num_images, "num_images"):
        info, seconds = time_metrics(n, f.image_size, f.repeats)
        print(f"{n} images {f.image_size}x{f.image_size} ({info['pixels'] / 1e6:.1f}M pixels, "
              f"{info['defective']:.2%} defective), best of {f.repeats}:")
        for name, best in seconds.items():
            print(f"  {name:34s} {best:7.2f} s", flush=True)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
