"""BTAD, beanTech Anomaly Detection (Mishra et al., ISIE 2021): products 01, 02, 03.

Layout: <root>/<product>/train/ok/*, test/ok/*, test/ko/*, ground_truth/ko/* where images are
.bmp or .png depending on the product and masks share the image's stem (any image extension).
`ok` is good, `ko` defective (defect type `ko`).
"""

import os

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout

CATEGORIES = ("01", "02", "03")


def scan(root: str, category: str, dataset: str) -> dict[str, list[base.Sample]]:
    root = layout.resolve_root(root, category, dataset)
    base_dir = os.path.join(root, category)
    fix = f"Expected the BTAD layout under {base_dir}: train/ok, test/ok, test/ko, ground_truth/ko."

    def folder(*parts):
        path = os.path.join(base_dir, *parts)
        return [os.path.join(path, n) for n in layout.require_images(path, "/".join(parts), fix)]

    mask_dir = os.path.join(base_dir, "ground_truth", "ko")
    defective = [(p, "ko", layout.find_mask(mask_dir, os.path.splitext(os.path.basename(p))[0]))
                 for p in folder("test", "ko")]
    train = [layout.good_sample(p, root) for p in folder("train", "ok")]
    return {"train": train, "test": layout.good_defective_samples(folder("test", "ok"), defective, root)}


class Btad(base.AnomalyBuilder):
    """BTAD, one config per product."""

    name = "btad"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "http://avires.dimi.uniud.it/papers/btad/btad.zip"
    DESCRIPTION = __doc__
    CITATION = ("Mishra, Verk, Fornasier, Piciarelli, Foresti. VT-ADL: A Vision Transformer Network "
                "for Image Anomaly Detection and Localization. ISIE 2021.")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download btad.zip (http://avires.dimi.uniud.it/papers/btad/btad.zip; read the licence terms that
come with it), extract it and pass the folder that contains 01/, 02/, 03/ as manual dir."""

    def list_samples(self, root, category):
        return scan(root, category, self.name)
