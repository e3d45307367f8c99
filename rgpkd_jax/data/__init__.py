"""Datasets: one TFDS builder per dataset (array_record, no TensorFlow), preparation, lookup.

`get_builder(name, category, data_dir, manual_dir)` returns the builder of one category;
`prepare(builder, manual_dir)` writes its records once (when they exist it only checks that the
manual dir's files are still those they were built from). The input pipeline
(`rgpkd_jax.data.pipeline`) calls both, so a config is all a user needs.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import shlex
from typing import Optional

import tensorflow_datasets as tfds

from rgpkd_jax import files
from rgpkd_jax.data.base import SOURCE_FINGERPRINT
from rgpkd_jax.data.errors import DatasetError
from rgpkd_jax.data import btad, elpv, folder, mpdd, mvtec_3d_ad, mvtec_ad, synthetic, valeo_vad, visa

BUILDERS = {
    cls.name: cls
    for cls in (synthetic.Synthetic, mvtec_ad.MvtecAd, visa.Visa, mvtec_3d_ad.Mvtec3dAd, btad.Btad,
                mpdd.Mpdd, valeo_vad.ValeoVad, elpv.Elpv, folder.Folder)
}

DATA_DIR_ENV = "RGPKD_JAX_DATA"


def default_data_dir() -> str:
    """`$RGPKD_JAX_DATA`, else TFDS's default `~/tensorflow_datasets`."""
    return os.environ.get(DATA_DIR_ENV) or os.path.expanduser("~/tensorflow_datasets")


def builder_class(name: str):
    if name not in BUILDERS:
        raise DatasetError(f"Unknown dataset {name!r}; choose one of {sorted(BUILDERS)} "
                           "(config: dataset.name, flag: --dataset).")
    return BUILDERS[name]


def categories(name: str, manual_dir: Optional[str] = None) -> list[str]:
    """The categories of a dataset (for `folder`, those found under `manual_dir`)."""
    cls = builder_class(name)
    if cls is folder.Folder:
        return folder.discover_categories(manual_dir)
    return [config.name for config in cls.BUILDER_CONFIGS]


def get_builder(name: str, category: str, data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
    """The builder of one category; nothing is read or written yet."""
    cls = builder_class(name)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    if cls is folder.Folder:
        config = folder.config_for(manual_dir, category)
        with _custom_config_unannounced():
            return cls(config=config, data_dir=data_dir, file_format="array_record")
    known = categories(name)
    if category not in known:
        raise DatasetError(f"{name} has no category {category!r}; choose one of {known} "
                           "(config: dataset.category, flag: --category).")
    return cls(config=category, data_dir=data_dir, file_format="array_record")


class _NotCustomConfigWarning(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using custom data configuration")


@contextlib.contextmanager
def _custom_config_unannounced():
    """tfds warns "Using custom data configuration" whenever a builder gets a config of its own
    making: a folder builder always does (its config carries the folder), 3-5 times a run."""
    tfds_logger, quiet = std_logging.getLogger("absl"), _NotCustomConfigWarning()
    tfds_logger.addFilter(quiet)
    try:
        yield
    finally:
        tfds_logger.removeFilter(quiet)


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return tfds.core.dataset_info.dataset_info_path(builder.data_path).exists()


def check_source_unchanged(builder: tfds.core.DatasetBuilder, manual_dir: Optional[str]) -> None:
    """Raises DatasetError when the image and mask files under `manual_dir` are not those the
    prepared copy was built from (added, removed, resized or rewritten since). Nothing to compare
    without a manual dir (or once it is deleted), or for copies prepared before fingerprints were
    recorded."""
    recorded = (builder.info.metadata or {}).get(SOURCE_FINGERPRINT)
    manual_dir = os.path.expanduser(manual_dir) if manual_dir else None
    if not manual_dir or not os.path.isdir(manual_dir) or recorded is None:
        return
    current = builder.source_fingerprint(manual_dir)
    if current["sha256"] != recorded["sha256"]:
        # builder.category, not the config name: a folder config's name carries a hash of its path.
        raise DatasetError(
            f"{builder.name}/{builder.category}: the files in {manual_dir} changed since "
            f"the prepared copy in {builder.data_dir} was built ({recorded['num_files']} files, "
            f"{recorded['total_bytes']} bytes, newest {recorded['newest_mtime']}; now "
            f"{current['num_files']} files, {current['total_bytes']} bytes, newest "
            f"{current['newest_mtime']}). Prepare it again: python -m rgpkd_jax.data.prepare "
            f"--dataset {builder.name} --category {shlex.quote(builder.category)} --manual_dir "
            f"{shlex.quote(manual_dir)} --data_dir {shlex.quote(str(builder.data_dir_root))} --force")


def prepare(builder: tfds.core.DatasetBuilder, manual_dir: Optional[str] = None, *,
            force: bool = False, download: bool = False) -> None:
    """Writes the category's records from `manual_dir` (or, with `download`, a verified download
    where the dataset allows it). TFDS writes into `incomplete.*` and renames when done, and deletes
    that folder on failure, so a failed run leaves nothing that looks prepared. Records that exist
    are kept (unless `force`) if the manual dir still holds the files they were built from, else
    DatasetError (`check_source_unchanged`)."""
    if not force and is_prepared(builder):
        check_source_unchanged(builder, manual_dir)
        return
    builder.manual_dir = os.path.expanduser(manual_dir) if manual_dir else None
    builder.allow_download = download
    mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if force
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    root = os.fspath(builder.data_dir_root)
    downloads = os.path.join(root, "downloads")
    # A failure (a bad source folder) leaves none of the empty folders tfds made on the way.
    with files.no_new_empty_folders_on_failure(
            root, downloads, os.path.join(downloads, "extracted"), os.path.join(root, builder.name),
            os.path.dirname(os.fspath(builder.data_dir)), os.fspath(builder.data_dir)):
        # The file format comes from get_builder; passing it here too fails with force on a builder
        # that read its info from an existing prepared copy.
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                download_mode=mode,
                try_download_gcs=False,
            ))
