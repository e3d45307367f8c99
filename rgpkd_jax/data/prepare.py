"""Prepare datasets once: `python -m rgpkd_jax.data.prepare --dataset mvtec_ad --manual_dir DIR`.

Writes one array_record dataset per category into `--data_dir` (default `$RGPKD_JAX_DATA` or
`~/tensorflow_datasets`), all categories unless `--category` is given. Already prepared categories
are kept unless `--force` rebuilds them; kept ones are checked against `--manual_dir` (an error if
its files changed since). `--download` fetches and checks the public archive of datasets that
have one (MVTec AD, VisA, MVTec 3D-AD) when no `--manual_dir` is given.
"""

import time

import tqdm
from absl import flags

import rgpkd_jax.data as data_lib
from rgpkd_jax import cli

_DATASET = flags.DEFINE_enum("dataset", None, sorted(data_lib.BUILDERS), "Dataset to prepare.")
_CATEGORY = flags.DEFINE_string("category", None, "One category; default: all.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding the dataset in its own layout.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where prepared records go (default: $RGPKD_JAX_DATA "
                                "or ~/tensorflow_datasets).")
_DOWNLOAD = flags.DEFINE_bool("download", False, "Download the public archive if no --manual_dir.")
_FORCE = flags.DEFINE_bool("force", False, "Prepare again even if prepared (after the source files "
                           "changed).")
flags.mark_flag_as_required("dataset")


def prepare_all(dataset, categories, *, data_dir=None, manual_dir=None, download=False, force=False):
    """Prepares each category; returns {category: {split: num_examples}}."""
    counts = {}
    for category in tqdm.tqdm(categories, desc=f"{dataset} categories", unit="category"):
        builder = data_lib.get_builder(dataset, category, data_dir=data_dir, manual_dir=manual_dir)
        start = time.perf_counter()
        data_lib.prepare(builder, manual_dir, force=force, download=download)
        counts[category] = {name: split.num_examples for name, split in builder.info.splits.items()}
        tqdm.tqdm.write(f"{dataset}/{category}: {counts[category]} in {time.perf_counter() - start:.1f} s "
                        f"-> {builder.data_dir}")
    return counts


def main(argv):
    del argv
    categories = ([_CATEGORY.value] if _CATEGORY.value
                  else data_lib.categories(_DATASET.value, _MANUAL_DIR.value))
    prepare_all(_DATASET.value, categories, data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value,
                download=_DOWNLOAD.value, force=_FORCE.value)


if __name__ == "__main__":
    cli.run(main, compilation_cache=False)
