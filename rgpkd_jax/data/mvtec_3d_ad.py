"""MVTec 3D-AD (Bergmann et al., VISAPP 2022): 10 categories; we read the RGB images and masks only.

Layout: <root>/<category>/{train,validation,test}/<defect>/{rgb,xyz,gt}/NNN.png (xyz: .tiff).
train = train/good/rgb, validation = validation/good/rgb (normal images, kept as their own split),
test = test/<defect>/rgb with masks test/<defect>/gt/<same name>.
"""

import os

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout
from rgpkd_jax.data.errors import DatasetError

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato",
              "rope", "tire")


def scan(root: str, category: str, dataset: str) -> dict[str, list[base.Sample]]:
    root = layout.resolve_root(root, category, dataset)
    base_dir = os.path.join(root, category)
    fix = f"Expected the MVTec 3D-AD layout under {base_dir}: <split>/<defect>/{{rgb,xyz,gt}}/."

    def split_samples(split: str, required: bool) -> list[base.Sample]:
        split_dir = os.path.join(base_dir, split)
        if not os.path.isdir(split_dir) and not required:
            return []
        samples = []
        for defect in layout.visible_entries(layout.require_dir(split_dir, f"{split} images", fix)):
            rgb_dir = os.path.join(split_dir, defect, "rgb")
            if not os.path.isdir(os.path.join(split_dir, defect)):
                continue
            for name in layout.require_images(rgb_dir, f"{split}/{defect} RGB images", fix):
                path = os.path.join(rgb_dir, name)
                defective = defect != base.GOOD
                mask = layout.find_mask(os.path.join(split_dir, defect, "gt"), os.path.splitext(name)[0])
                samples.append(base.Sample(image=path, label=int(defective), defect_type=defect,
                                           file_name=layout.relative(path, root),
                                           mask=mask if defective else None))
        return samples

    splits = {"train": [s for s in split_samples("train", True) if s.label == 0],
              "test": split_samples("test", True)}
    validation = [s for s in split_samples("validation", False) if s.label == 0]
    if validation:
        splits["validation"] = validation
    if not splits["train"]:
        raise DatasetError(f"No images in {os.path.join(base_dir, 'train', 'good', 'rgb')}. {fix}")
    return splits


class Mvtec3dAd(base.AnomalyBuilder):
    """MVTec 3D-AD (RGB + masks), one config per category."""

    name = "mvtec_3d_ad"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "https://www.mvtec.com/company/research/datasets/mvtec-3d-ad"
    DESCRIPTION = __doc__
    CITATION = ("Bergmann, Jin, Sattlegger, Steger. The MVTec 3D-AD Dataset for Unsupervised 3D "
                "Anomaly Detection and Localization. VISAPP 2022.")
    # Public archive (CC BY-NC-SA 4.0); md5 as published by anomalib's DownloadInfo.
    DOWNLOAD = ("https://www.mydrive.ch/shares/45920/dd1eb345346df066c63b5c95676b961b/download/"
                "428824485-1643285832/mvtec_3d_anomaly_detection.tar.xz", "md5",
                "d8bb2800fbf3ac88e798da6ae10dc819")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download mvtec_3d_anomaly_detection.tar.xz from https://www.mvtec.com/company/research/datasets/mvtec-3d-ad
(CC BY-NC-SA 4.0), extract it and pass the folder that contains bagel/, cable_gland/, ... as manual
dir. Only <split>/<defect>/rgb and gt are read. `--download` fetches and checks the archive instead."""

    def list_samples(self, root, category):
        return scan(root, category, self.name)
