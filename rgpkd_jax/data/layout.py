"""Reading datasets' on-disk layouts into `Sample` lists, with errors that say what is wrong.

MVTec layout (MVTec AD, MPDD, `folder`, and VisA once converted):
    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png, test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png   (or <stem>.png, as VisA's converted masks)
Image files are recognised by their suffix (`deploy.images.IMAGE_SUFFIXES`: png, jpg, jpeg, bmp,
tif, tiff, webp; any case); other files of an image folder are skipped with a warning naming them,
hidden ones (.DS_Store) silently. Lists are sorted by file name.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from absl import logging

from rgpkd_jax.data.base import GOOD, Sample
from rgpkd_jax.data.errors import DatasetError
from rgpkd_jax.deploy.images import IMAGE_SUFFIXES, describe_skipped, is_image_name

MANUAL_DIR_OPTION = "config: dataset.manual_dir, flag: --manual_dir"


def visible_entries(folder: str) -> list[str]:
    return sorted(e for e in os.listdir(folder) if not e.startswith("."))


def image_files(folder: str) -> list[str]:
    """Sorted image file names in `folder` (not recursive)."""
    return [e for e in visible_entries(folder) if is_image_name(e) and os.path.isfile(os.path.join(folder, e))]


def require_dir(path: str, what: str, fix: str) -> str:
    if not os.path.isdir(path):
        raise DatasetError(f"Missing folder {path} ({what}). {fix}")
    return path


def require_images(folder: str, what: str, fix: str) -> list[str]:
    """The image files of a folder of images (one warning names its other files); none is an error."""
    names = image_files(require_dir(folder, what, fix))
    skipped = [e for e in visible_entries(folder) if e not in names and os.path.isfile(os.path.join(folder, e))]
    if skipped:
        logging.warning("%s: skipping %s", folder, describe_skipped(skipped))
    if not names:
        raise DatasetError(f"Folder {folder} ({what}) has no images ({' '.join(IMAGE_SUFFIXES)}). {fix}")
    return names


def _category_folder_hint(path: str) -> str:
    """A hint when ``path`` is itself one category in MVTec-like layout (it holds train/)."""
    if not os.path.isdir(os.path.join(path, "train")):
        return ""
    path = os.path.normpath(path)
    return (f" {path} looks like one category's folder (it holds train/): pass its parent "
            f"{os.path.dirname(path)} as manual dir, and {os.path.basename(path)!r} as the category.")


def resolve_root(root: str, child: str, dataset: str) -> str:
    """The folder at or below `root` that contains `child`, skipping single-folder wrappers
    (archives often extract into one extra folder)."""
    path = root
    while not os.path.exists(os.path.join(path, child)):
        entries = visible_entries(path) if os.path.isdir(path) else []
        if len(entries) == 1 and os.path.isdir(os.path.join(path, entries[0])):
            path = os.path.join(path, entries[0])
            continue
        raise DatasetError(
            f"{dataset}: {child!r} not found in {path} (it contains {entries[:20]}). Pass as manual dir "
            f"the folder that contains {child!r} ({MANUAL_DIR_OPTION}).{_category_folder_hint(path)}")
    return path


def find_mask(mask_dir: str, stem: str) -> Optional[str]:
    """`<stem>_mask.*` or `<stem>.*` in `mask_dir`, or None."""
    if not os.path.isdir(mask_dir):
        return None
    candidates = {os.path.splitext(name)[0]: name for name in image_files(mask_dir)}
    for key in (stem + "_mask", stem):
        if key in candidates:
            return os.path.join(mask_dir, candidates[key])
    return None


def relative(path: str, root: str) -> str:
    """`path` relative to the dataset root, with forward slashes (the `file_name` feature)."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def scan_mvtec(root: str, category: str, dataset: str) -> dict[str, list[Sample]]:
    """train/test samples of one category in MVTec layout."""
    root = resolve_root(root, category, dataset)
    base = os.path.join(root, category)
    fix = f"Expected the MVTec layout under {base}: train/good, test/<defect>, ground_truth/<defect>."
    train_dir = os.path.join(base, "train", GOOD)
    train = [good_sample(os.path.join(train_dir, name), root)
             for name in require_images(train_dir, "training images", fix)]
    test_root = require_dir(os.path.join(base, "test"), "test images", fix)
    test = []
    for defect in visible_entries(test_root):
        folder = os.path.join(test_root, defect)
        if not os.path.isdir(folder):
            continue
        for name in require_images(folder, f"test images of {defect!r}", fix):
            path = os.path.join(folder, name)
            mask = None
            if defect != GOOD:
                mask = find_mask(os.path.join(base, "ground_truth", defect), os.path.splitext(name)[0])
            test.append(Sample(image=path, label=int(defect != GOOD), defect_type=defect,
                               file_name=relative(path, root), mask=mask))
    if not test:
        raise DatasetError(f"Folder {test_root} has no defect folders with images. {fix}")
    return {"train": train, "test": test}


def mvtec_categories(root: Optional[str]) -> list[str]:
    """Sub-folders of `root` (or of the folder it wraps) that look like MVTec categories."""
    if not root:
        raise DatasetError("The folder dataset needs its folder: set --config.dataset.manual_dir (prepare: "
                           "--manual_dir) to the folder that holds one sub-folder per category in MVTec layout.")
    if not os.path.isdir(root):
        raise DatasetError(f"Dataset folder {root!r} does not exist. Pass the folder that contains one "
                           f"sub-folder per category in MVTec layout ({MANUAL_DIR_OPTION}).")
    path = root
    while True:
        entries = visible_entries(path)
        found = [e for e in entries if os.path.isdir(os.path.join(path, e, "train", GOOD))]
        if found:
            return found
        if len(entries) == 1 and os.path.isdir(os.path.join(path, entries[0])):
            path = os.path.join(path, entries[0])
            continue
        raise DatasetError(f"No category folders (<category>/train/good) found in {root}. Arrange the data "
                           "in MVTec layout: <root>/<category>/{train/good, test/<defect>, "
                           f"ground_truth/<defect>}}.{_category_folder_hint(root)}")


def good_sample(path: str, root: str) -> Sample:
    """The sample of a good image at ``path`` under the dataset root ``root``."""
    return Sample(image=path, label=0, defect_type=GOOD, file_name=relative(path, root))


def good_defective_samples(good: Iterable[str], defective: Iterable[tuple[str, str, Optional[str]]],
                           root: str) -> list[Sample]:
    """Test samples from good image paths and (image path, defect type, mask path) triples."""
    samples = [good_sample(p, root) for p in good]
    samples += [Sample(image=p, label=1, defect_type=d, file_name=relative(p, root), mask=m)
                for p, d, m in defective]
    return sorted(samples, key=lambda s: s.file_name)


def image_label_splits(train_good: Iterable[str], test_good: Iterable[str],
                       defective: Iterable[tuple[str, str]], root: str) -> dict[str, list[Sample]]:
    """The splits of a dataset with image labels only (`base.ImageLabelBuilder`): train the good
    images ``train_good``; test the good ``test_good`` and the (image path, defect type) pairs
    ``defective``, without masks, sorted by file name."""
    return {"train": [good_sample(p, root) for p in train_good],
            "test": good_defective_samples(test_good, [(p, d, None) for p, d in defective], root)}
