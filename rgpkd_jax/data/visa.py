"""VisA, Visual Anomaly dataset (Zou et al., ECCV 2022): 12 categories, read from its own layout.

Raw layout (VisA_20220922.tar):
    <root>/split_csv/1cls.csv          columns object,split,label,image,mask (paths relative to <root>)
    <root>/<object>/Data/Images/{Normal,Anomaly}/*.JPG
    <root>/<object>/Data/Masks/Anomaly/*.png     0/255 or 0/1 masks (0/1 are scaled to 0/255)
The 1cls split (normal images split into train/test, all anomalies in test) is the one RD4AD-style
papers use. The CSV gives no defect type per image, so defective images get `anomaly`.
Data already converted to MVTec layout (e.g. `VisA_pytorch/1cls/<object>/train/good`, with
`<name>.png` masks) is accepted too.
"""

import csv
import os

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout
from rgpkd_jax.data.errors import DatasetError

CATEGORIES = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
              "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum")
SPLIT_CSV = os.path.join("split_csv", "1cls.csv")
_COLUMNS = ("object", "split", "label", "image", "mask")


def read_split_csv(root: str, category: str) -> dict[str, list[base.Sample]]:
    """Samples of one object from split_csv/1cls.csv."""
    csv_path = os.path.join(root, SPLIT_CSV)
    splits = {"train": [], "test": []}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DatasetError(f"{csv_path} lacks columns {missing} (has {reader.fieldnames}); "
                                    "use the split_csv/1cls.csv shipped with VisA.")
        for line, row in enumerate(reader, start=2):
            if row["object"] != category:
                continue
            split, label = row["split"].strip(), row["label"].strip()
            if split not in splits or label not in ("normal", "anomaly"):
                raise DatasetError(f"{csv_path}:{line}: unexpected split {split!r} or label {label!r} "
                                        "(expected train/test and normal/anomaly).")
            image = os.path.join(root, row["image"])
            if not os.path.isfile(image):
                raise DatasetError(f"{csv_path}:{line} lists {image}, which does not exist. "
                                        "Re-extract VisA or fix the CSV.")
            defective = label == "anomaly"
            mask = os.path.join(root, row["mask"]) if defective and row["mask"].strip() else None
            if mask is not None and not os.path.isfile(mask):
                raise DatasetError(f"{csv_path}:{line}: mask {mask} of {image} does not exist. "
                                        "Re-extract VisA or fix the CSV.")
            splits[split].append(base.Sample(
                image=image, label=int(defective), defect_type="anomaly" if defective else base.GOOD,
                file_name=layout.relative(image, root), mask=mask))
    if not any(splits.values()):
        raise DatasetError(f"{csv_path} has no rows for object {category!r}.")
    return {split: sorted(samples, key=lambda s: s.file_name) for split, samples in splits.items()}


class Visa(base.AnomalyBuilder):
    """VisA (1cls split), one config per object."""

    name = "visa"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "https://github.com/amazon-science/spot-diff"
    DESCRIPTION = __doc__
    CITATION = ("Zou, Jeong, Pemula, Zhang, Dabeer. SPot-the-Difference Self-Supervised Pre-training "
                "for Anomaly Detection and Segmentation. ECCV 2022.")
    # Public archive on AWS Open Data (CC BY 4.0); md5 as published by anomalib's DownloadInfo.
    DOWNLOAD = ("https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar", "md5",
                "ef908989b6dc701fc218f643c127a4de")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download VisA_20220922.tar (https://github.com/amazon-science/spot-diff, CC BY 4.0), extract it
and pass the folder that contains split_csv/ and candle/, capsules/, ... as manual dir.
`python -m rgpkd_jax.data.prepare --dataset visa --download` fetches and checks the archive instead."""

    def list_samples(self, root, category):
        try:
            csv_root = layout.resolve_root(root, SPLIT_CSV, self.name)
        except DatasetError:
            return layout.scan_mvtec(root, category, self.name)  # already converted to MVTec layout
        return read_split_csv(csv_root, category)
