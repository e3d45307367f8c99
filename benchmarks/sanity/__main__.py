"""Sanity check between methods on the embedded synthetic data: every registered method and every
RGPKD variant, same random ResNet18 teacher, same data, several seeds, in both settings (one model
per category, and one unified model on all the chosen categories); mean +- std over categories x seeds.

    python -m benchmarks.sanity --output_dir workdirs/sanity                    # 128 px, 20 epochs, 3x3
    python -m benchmarks.sanity --output_dir workdirs/sanity_small --categories=grid --seeds=0 \\
        --epochs=2 --image_size=64 --variants=rd4ad,rgpkd --settings=per_category  # a few CPU minutes

A **random** teacher makes these numbers meaningless as results on real data; what they check is
that every method separates the synthetic defects at least as a plain RD4AD does (docs/rgpkd.md
"Sanity check"). Never quote them as accuracy.

Unlike `rgpkd_jax.train` it keeps the data in memory, shuffles with numpy (`seed`, a fresh
permutation per epoch, of the union in the unified setting, last partial batch dropped as the
pipeline's natural sampling does) and writes no checkpoints. A unified RGPKD model also reports how
often its top-1 prompt comes from the image's own category (docs/unified.md).
Every finished run is one line of `<output_dir>/sanity_runs.jsonl` (a rerun resumes); the tables
are `sanity.json` and `sanity.md` beside it.
"""

from __future__ import annotations

import os

from absl import flags

from benchmarks import common_flags
from benchmarks.sanity import benchmark, tables, variants
from rgpkd_jax import cli
from rgpkd_jax.data import synthetic


def define_flags() -> None:
    common_flags.define_output_dir(None, f"{benchmark.RUNS_FILE}, {tables.TABLE_STEM}.json and "
                                   f"{tables.TABLE_STEM}.md")
    flags.DEFINE_list("variants", list(variants.VARIANT_NAMES), "Which variants (rows), in this order: every "
                      f"registered method, the baseline and RGPKD's ablations: {variants.VARIANT_NAMES}.")
    flags.DEFINE_list("categories", list(synthetic.CATEGORIES), "Synthetic categories.")
    common_flags.define_settings("one model on the union of the --categories' training splits (two or more), "
                                 "scored on each category's test split alone")
    common_flags.define_seeds([0, 1, 2], "model init, random teacher, data order")
    flags.DEFINE_integer("epochs", benchmark.Settings.epochs, "Training epochs (60 training images: 3 steps of "
                         "16 each).")
    flags.DEFINE_integer("image_size", benchmark.Settings.image_size, "Image side (a multiple of 32).")
    flags.DEFINE_integer("batch_size", benchmark.Settings.batch_size, "Training batch size.")
    common_flags.define_config_dir()
    common_flags.define_overrides()
    flags.DEFINE_string("data_dir", "", "TFDS data dir of the synthetic dataset (default: the config's).")
    flags.DEFINE_string("arrays_dir", "", "Cache of the decoded splits as .npz (default: "
                        "<output_dir>/arrays); with every split there, no dataset is read.")
    flags.DEFINE_bool("table_only", False, f"Only write the tables from {benchmark.RUNS_FILE}.")


def main(argv):
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    if not f.output_dir:
        raise ValueError("--output_dir is required: where the runs and tables go")
    chosen = variants.select(f.variants)
    common_flags.check_choices("categories", f.categories, synthetic.CATEGORIES)
    common_flags.check_settings(f.settings)
    seeds = common_flags.whole_numbers(f.seeds, "seeds")
    if f.image_size % 32:
        raise ValueError(f"--image_size={f.image_size}: RGPKD needs a multiple of 32")
    settings = benchmark.Settings(epochs=f.epochs, image_size=f.image_size, batch_size=f.batch_size,
                                  overrides=tuple(f.overrides))
    if f.table_only:
        benchmark.write_tables(f.output_dir, chosen, f.categories, seeds, settings, config_dir=f.config_dir,
                               setting_names=f.settings)
    else:
        benchmark.run_benchmark(f.output_dir, chosen, f.categories, seeds, settings, config_dir=f.config_dir,
                                data_dir=f.data_dir, arrays_dir=f.arrays_dir, setting_names=f.settings)
    print(f"wrote {tables.TABLE_STEM}.md and {tables.TABLE_STEM}.json to {os.path.abspath(f.output_dir)}",
          flush=True)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
