"""MVTec AD (Bergmann et al., CVPR 2019): 15 categories in MVTec layout.

grid, screw and zipper are grayscale PNGs; they are stored as RGB (three equal channels), which is
what the official loader's `convert('RGB')` produces.
"""

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout

CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
              "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
GRAYSCALE_CATEGORIES = ("grid", "screw", "zipper")


class MvtecAd(base.AnomalyBuilder):
    """MVTec AD, one config per category."""

    name = "mvtec_ad"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
    DESCRIPTION = __doc__
    CITATION = ("Bergmann, Fauser, Sattlegger, Steger. MVTec AD -- A Comprehensive Real-World Dataset "
                "for Unsupervised Anomaly Detection. CVPR 2019.")
    # Public archive (4.9 GB, CC BY-NC-SA 4.0); sha256 as published by anomalib's DownloadInfo.
    DOWNLOAD = ("https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
                "420938113-1629952094/mvtec_anomaly_detection.tar.xz", "sha256",
                "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download mvtec_anomaly_detection.tar.xz from https://www.mvtec.com/company/research/datasets/mvtec-ad
(CC BY-NC-SA 4.0, non-commercial use), extract it, and pass the folder that contains bottle/,
cable/, ... as manual dir. Each category must keep its layout:
    <category>/train/good/*.png, <category>/test/<defect>/*.png, <category>/ground_truth/<defect>/*_mask.png
`python -m rgpkd_jax.data.prepare --dataset mvtec_ad --download` fetches and checks the archive instead."""

    def list_samples(self, root, category):
        return layout.scan_mvtec(root, category, self.name)
