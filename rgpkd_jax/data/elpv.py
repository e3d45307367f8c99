"""ELPV: electroluminescence images of solar cells (Buerhop-Lutz et al., 2018; Deitsch et al.).

Source: the `elpv-dataset` PyPI package (optional extra `elpv`: `pip install rgpkd_jax[elpv]`) or a
clone of https://github.com/zae-bayern/elpv-dataset given as manual dir. Both hold `labels.csv`
(whitespace separated: `images/cellNNNN.png  <defect probability>  <mono|poly>`) and `images/`
(300x300 grayscale PNGs). Configs `mono` and `poly` select the cell type.

Split (ours; the dataset defines none): probability 0 is good, > 0 defective (defect type
`p033`/`p067`/`p100` from the probability). Every 4th good cell in file order goes to test, the
other good cells to train; all defective cells go to test. Image labels only (no masks).
"""

import importlib.util
import os

import tensorflow_datasets as tfds

from rgpkd_jax.data import base, layout
from rgpkd_jax.data.errors import DatasetError

CATEGORIES = ("mono", "poly")
LABELS_FILE = "labels.csv"
TEST_EVERY = 4


def package_root() -> str | None:
    """The data folder of an installed `elpv-dataset` package, or None."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def scan(root: str, category: str, dataset: str) -> dict[str, list[base.Sample]]:
    root = layout.resolve_root(root, LABELS_FILE, dataset)
    labels = os.path.join(root, LABELS_FILE)
    train_good, test_good, defective = [], [], []
    with open(labels) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                relative_path, probability, cell_type = line.split()
                probability = float(probability)
            except ValueError as error:
                raise DatasetError(f"{labels}:{line_number}: expected '<path> <probability> <mono|poly>', "
                                        f"got {line.strip()!r}.") from error
            if cell_type != category:
                continue
            path = os.path.join(root, relative_path)
            if not os.path.isfile(path):
                raise DatasetError(f"{labels}:{line_number} lists {path}, which does not exist. "
                                        "Reinstall elpv-dataset or re-clone the repository.")
            if probability == 0:
                good_seen = len(train_good) + len(test_good)
                (test_good if good_seen % TEST_EVERY == TEST_EVERY - 1 else train_good).append(path)
            else:
                defective.append((path, f"p{round(probability * 100):03d}"))
    return layout.image_label_splits(train_good, test_good, defective, root)


class Elpv(base.ImageLabelBuilder):
    """ELPV solar cells, configs mono / poly (image labels only)."""

    name = "elpv"
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c) for c in CATEGORIES]
    HOMEPAGE = "https://github.com/zae-bayern/elpv-dataset"
    DESCRIPTION = __doc__
    CITATION = ("Buerhop-Lutz, Deitsch, Maier, Gallwitz, Berger, Doll, Hauch, Camus, Brabec. A Benchmark "
                "for Visual Identification of Defective Solar Cells in Electroluminescence Imagery. "
                "EU PVSEC 2018. DOI 10.4229/35thEUPVSEC20182018-5CV.3.15")
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Install the optional extra (`pip install 'rgpkd_jax[elpv]'`, i.e. the elpv-dataset package,
CC BY-NC-SA 4.0 data) and nothing else is needed; or clone https://github.com/zae-bayern/elpv-dataset
and pass the folder that contains labels.csv and images/ as manual dir."""

    def source_root(self, dl_manager):
        if self.manual_dir is None and package_root():
            return package_root()
        return super().source_root(dl_manager)

    def list_samples(self, root, category):
        return scan(root, category, self.name)
