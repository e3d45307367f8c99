"""Datasets: one TFDS builder per dataset (array_record, no TensorFlow), preparation, lookup.

`get_builder(name, category, data_dir, manual_dir)` returns the builder of one category;
`prepare(builder, manual_dir)` writes its records once (a no-op when they exist). The input
pipeline (`rgpkd_jax.data.pipeline`) calls both, so a config is all a user needs.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow_datasets as tfds

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
        return cls(config=config, data_dir=data_dir, file_format="array_record")
    known = categories(name)
    if category not in known:
        raise DatasetError(f"{name} has no category {category!r}; choose one of {known} "
                           "(config: dataset.category, flag: --category).")
    return cls(config=category, data_dir=data_dir, file_format="array_record")


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return tfds.core.dataset_info.dataset_info_path(builder.data_path).exists()


def prepare(builder: tfds.core.DatasetBuilder, manual_dir: Optional[str] = None, *,
            force: bool = False, download: bool = False) -> None:
    """Writes the category's records from `manual_dir` (or, with `download`, a verified download
    where the dataset allows it). TFDS writes into `incomplete.*` and renames when done, and deletes
    that folder on failure, so a failed run leaves nothing that looks prepared."""
    builder.manual_dir = os.path.expanduser(manual_dir) if manual_dir else None
    builder.allow_download = download
    mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if force
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            download_mode=mode,
            try_download_gcs=False,
        ))
