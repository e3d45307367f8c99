"""`folder`: any data in MVTec layout at a path given in the config (`dataset.manual_dir`).

Categories are the sub-folders that contain `train/good`. The TFDS config name joins the category
and a hash of the folder's absolute path, so two different folders never share prepared records.
Prepared records are not refreshed when the files change: prepare again with `--force`.
"""

import dataclasses
import hashlib
import os
from typing import Optional

import tensorflow_datasets as tfds
from absl import logging

from rgpkd_jax.data import base, layout
from rgpkd_jax.data.errors import DatasetError


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    root: str = ""
    category: str = ""


def discover_categories(root: Optional[str]) -> list[str]:
    return layout.mvtec_categories(os.path.expanduser(root) if root else root)


def config_for(root: Optional[str], category: str) -> FolderConfig:
    """The builder config of `category` under `root`, after checking both exist."""
    found = discover_categories(root)
    if category not in found:
        raise DatasetError(f"No category {category!r} in {root}; found {found} "
                                "(config: dataset.category, flag: --category).")
    absolute = os.path.realpath(os.path.expanduser(root))
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:10]
    return FolderConfig(name=f"{category}-{digest}", root=absolute, category=category,
                        description=f"{category} from {absolute}")


class Folder(base.AnomalyBuilder):
    """User data in MVTec layout."""

    name = "folder"
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Put your data in MVTec layout and pass its root as manual dir:
    <root>/<category>/train/good/*.png            normal training images
    <root>/<category>/test/good/*.png             normal test images
    <root>/<category>/test/<defect>/*.png         defective test images
    <root>/<category>/ground_truth/<defect>/<name>_mask.png   masks (white = defect)
Without a ground_truth folder the category has image labels only: it trains, predicts and is
evaluated on the image metrics; the pixel metrics are reported as unavailable."""

    @property
    def category(self):
        return self.builder_config.category

    def source_root(self, dl_manager):
        return self.builder_config.root

    def list_samples(self, root, category):
        return layout.scan_mvtec(root, category, self.name)

    def has_masks(self, root):
        base = os.path.join(layout.resolve_root(root, self.category, self.name), self.category)
        if os.path.isdir(os.path.join(base, "ground_truth")):
            return True  # then every defective image needs its mask (checked when preparing)
        logging.warning("%s has no ground_truth folder: image labels only. Training and predict work; "
                        "evaluation reports the image metrics, the pixel metrics as unavailable.", base)
        return False
