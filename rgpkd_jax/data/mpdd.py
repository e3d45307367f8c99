"""MPDD, Metal Parts Defect Detection (Jezek et al., ICUMT 2021): 6 categories in MVTec layout."""

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout

CATEGORIES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")


class Mpdd(base.AnomalyBuilder):
    """MPDD, one config per category."""

    name = "mpdd"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "https://github.com/stepanje/MPDD"
    DESCRIPTION = __doc__
    CITATION = ("Jezek, Jonak, Burget, Dvorak, Skotak. Deep learning-based defect detection of metal "
                "parts: evaluating current methods in complex conditions. ICUMT 2021.")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download MPDD from the link in https://github.com/stepanje/MPDD (a Google Drive archive), extract
it and pass the folder that contains bracket_black/, connector/, ... as manual dir. MPDD uses the
MVTec layout: <category>/train/good, test/<defect>, ground_truth/<defect>/<name>_mask.png."""

    def list_samples(self, root, category):
        return layout.scan_mvtec(root, category, self.name)
