"""Times the official AU-PRO (and the other metrics) on random 256x256 test sets of growing size.

    python -m benchmarks.aupro_timing --num_images=150,1000 --repeats=3

Masks are MVTec-like: a third of the images good, the others with one to three elliptic defects
of 0.1-5 % of the image; maps are smooth noise plus a signal on the defects, in float32
(`benchmarks.inputs.anomaly_test_set`). Each row is the best of `--repeats` calls. The speed
benchmark's aupro section compares the same metrics with a threshold loop and anomalib on a few
maps; this tool shows how ours scale to a full test set.
"""

from __future__ import annotations

from absl import app, flags

from benchmarks import inputs, timing


def time_metrics(num_images: int, size: int, repeats: int) -> tuple[dict, dict[str, float]]:
    """({'pixels', 'defective'} of the test set, {metric: best seconds of `repeats` calls})."""
    from rgpkd_jax.metrics import aupro, auroc
    maps, masks, _ = inputs.anomaly_test_set(num_images, size, seed=num_images)
    cases = {"official AU-PRO (exact, FPR 0.3)": lambda: aupro.aupro(maps, masks),
             "RD4AD per-image AUPRO": lambda: aupro.aupro_rd4ad_per_image(maps, masks),
             "pixel AUROC": lambda: auroc.roc_auc(maps, masks)}
    seconds = {name: min(timing.seconds_per_call(fn, warmup=0, repeats=repeats)) for name, fn in cases.items()}
    return {"pixels": maps.size, "defective": float(masks.sum()) / masks.size}, seconds


def define_flags() -> None:
    """Only when run as a program: importing this module defines no flags."""
    flags.DEFINE_list("num_images", ["150", "1000"], "Test-set sizes, one table each.")
    flags.DEFINE_integer("size", 256, "Image side in pixels.")
    flags.DEFINE_integer("repeats", 3, "Calls per metric; the best is reported.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    try:
        sizes = [int(n) for n in f.num_images]
    except ValueError:
        raise app.UsageError(f"--num_images={','.join(f.num_images)}: give whole numbers, e.g. 150,1000") from None
    for n in sizes:
        info, seconds = time_metrics(n, f.size, f.repeats)
        print(f"{n} images {f.size}x{f.size} ({info['pixels'] / 1e6:.1f}M pixels, "
              f"{info['defective']:.2%} defective), best of {f.repeats}:")
        for name, best in seconds.items():
            print(f"  {name:34s} {best:7.2f} s", flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
