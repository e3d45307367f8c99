"""Valeo Anomaly Dataset, VAD (Baitieva et al., CVPR 2024): one category, image labels only.

Layout (as published in the dataset's README):
    <root>/train/good, train/bad, test/good, test/bad, test/bad_unseen_defects
We train without supervision, so train = train/good only (train/bad is not used); test = test/good
(good) + test/bad and test/bad_unseen_defects (defective, defect type = folder name). There are no
masks: defective images get all-zero masks, so only image-level metrics mean anything.
"""

import os

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout

CATEGORIES = ("vad",)
_DEFECTIVE_FOLDERS = ("bad", "bad_unseen_defects")


def scan(root: str, dataset: str) -> dict[str, list[base.Sample]]:
    root = layout.resolve_root(root, "test", dataset)
    fix = f"Expected the VAD layout under {root}: train/good, test/good, test/bad[, test/bad_unseen_defects]."

    def folder(*parts):
        path = os.path.join(root, *parts)
        return [os.path.join(path, n) for n in layout.require_images(path, "/".join(parts), fix)]

    defective = [(p, name) for name in _DEFECTIVE_FOLDERS
                 if name == "bad" or os.path.isdir(os.path.join(root, "test", name))
                 for p in folder("test", name)]
    return layout.image_label_splits(folder("train", base.GOOD), folder("test", base.GOOD), defective, root)


class ValeoVad(base.ImageLabelBuilder):
    """Valeo VAD (image labels only)."""

    name = "valeo_vad"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "https://github.com/abc-125/vad"
    DESCRIPTION = __doc__
    CITATION = ("Baitieva, Hurych, Besnier, Bernard. Supervised Anomaly Detection for Complex "
                "Industrial Images. CVPR 2024.")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download VAD through the link in https://github.com/abc-125/vad (CC BY-NC-SA 4.0), extract it and
pass the folder that contains train/ and test/ as manual dir."""

    def list_samples(self, root, category):
        return scan(root, self.name)
