"""A folder in MVTec AD's layout holding synthetic images at MVTec's size and counts, for timing what
one real category costs (decoding ~1 MiB PNGs, a ~240-image training split) without the dataset.

MVTec AD has 3629 training and 1725 test images over 15 categories (~242 and ~115 a category),
700 to 1024 px a side (Bergmann et al., CVPR 2019; third_party/datasets.md). The drawings are `rgpkd_jax.data.synthetic`'s, read
by the `folder` dataset (`configs/<method>.py:folder/<name>` with `dataset.manual_dir=<root>`).
"""

from __future__ import annotations

import concurrent.futures
import os

from typing import Sequence

import numpy as np
from PIL import Image

from rgpkd_jax import config_files
from rgpkd_jax.data import synthetic

NUM_TRAIN, NUM_TEST_GOOD, NUM_TEST_DEFECTIVE = 240, 40, 75
SOURCE_SIZE = 1024
CATEGORY = "mvtec_like"


def write_category(root: str, name: str, *, size: int = SOURCE_SIZE, num_train: int = NUM_TRAIN,
                   num_test_good: int = NUM_TEST_GOOD, num_test_defective: int = NUM_TEST_DEFECTIVE,
                   product: str = synthetic.CATEGORIES[0]) -> str:
    """Writes `root/name/{train/good, test/good, test/<defect>, ground_truth/<defect>}` (kept if
    already complete) and returns `root`."""
    folder = os.path.join(root, name)
    jobs = [("train", "good", i) for i in range(num_train)] + [("test", "good", i) for i in range(num_test_good)]
    jobs += [("test", synthetic.DEFECT_TYPES[i % len(synthetic.DEFECT_TYPES)], i) for i in range(num_test_defective)]

    def write(job) -> None:
        split, defect, number = job
        path = os.path.join(folder, split, defect, f"{number:03d}.png")
        if os.path.exists(path):
            return
        seed = int(np.random.SeedSequence([("train", "test").index(split), number]).generate_state(1)[0])
        image, mask = synthetic.make_example(product, defect, seed, size)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if defect != "good":
            mask_path = os.path.join(folder, "ground_truth", defect, f"{number:03d}_mask.png")
            os.makedirs(os.path.dirname(mask_path), exist_ok=True)
            Image.fromarray(mask).save(mask_path)
        Image.fromarray(image).save(path + ".part", format="PNG")  # last, renamed: its presence means done
        os.replace(path + ".part", path)

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(write, jobs))
    return root


def load_config(data_root: str, overrides: Sequence[str] = (), *, method: str = "rd4ad", tiny: bool = False,
                config_dir: str = "configs"):
    """`configs/<method>.py:folder/mvtec_like` reading `data_root/source` (`write_category`), its
    prepared records in `data_root/tfds`, with a random teacher (timing only), then `overrides`."""
    spec = f"{os.path.join(config_dir, method)}.py:folder/{CATEGORY}{',tiny' if tiny else ''}"
    return config_files.load_config(spec, [
        f"dataset.manual_dir={os.path.join(data_root, 'source')}", f"dataset.data_dir={os.path.join(data_root, 'tfds')}",
        "teacher.weights=random", *overrides])
