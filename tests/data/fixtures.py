"""Tiny datasets written in each real on-disk layout (small images, deterministic content).

Every writer returns the root to pass as manual dir and a dict describing what it wrote, so tests
can compare a prepared dataset with the files themselves.
"""

from __future__ import annotations

import csv
import os
import zlib

import numpy as np
from PIL import Image

SIZE = (40, 48)  # (height, width): not square, so transposed sizes would show


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def image_array(key, size=SIZE, grayscale=False) -> np.ndarray:
    """Smooth random content (so resizing changes it) plus noise."""
    rng = _rng(key)
    height, width = size
    yy, xx = np.mgrid[:height, :width]
    base = 128 + 60 * np.sin(xx / rng.uniform(2, 6) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(2, 6))
    channels = 1 if grayscale else 3
    pixels = base[..., None] + rng.normal(0, 20, (height, width, channels))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    return pixels[..., 0] if grayscale else pixels


def mask_array(key, size=SIZE, foreground=255) -> np.ndarray:
    """An ellipse at a random place, values 0/foreground."""
    rng = _rng(key, "mask")
    height, width = size
    yy, xx = np.mgrid[:height, :width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    ry, rx = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
    return ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) * foreground).astype(np.uint8)


def _save(array, path, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def write_mvtec(root, category="widget", *, grayscale=False, num_train=4, num_test_good=2,
                defects=(("crack", 2), ("hole", 1)), mask_suffix="_mask", image_ext=".png",
                mask_foreground=255) -> dict:
    """MVTec AD / MPDD / folder layout."""
    base = os.path.join(root, category)
    written = {"train": [], "test": [], "masks": {}}
    for i in range(num_train):
        path = os.path.join(base, "train", "good", f"{i:03d}{image_ext}")
        _save(image_array((category, "train", i), grayscale=grayscale), path)
        written["train"].append(path)
    for i in range(num_test_good):
        path = os.path.join(base, "test", "good", f"{i:03d}{image_ext}")
        _save(image_array((category, "test", i), grayscale=grayscale), path)
        written["test"].append((path, "good"))
    for defect, count in defects:
        for i in range(count):
            path = os.path.join(base, "test", defect, f"{i:03d}{image_ext}")
            _save(image_array((category, defect, i), grayscale=grayscale), path)
            mask = os.path.join(base, "ground_truth", defect, f"{i:03d}{mask_suffix}.png")
            _save(mask_array((category, defect, i), foreground=mask_foreground), mask)
            written["test"].append((path, defect))
            written["masks"][path] = mask
    with open(os.path.join(root, "license.txt"), "w") as f:  # stray files must be ignored
        f.write("not an image")
    return written


def write_visa(root, category="candle", *, num_train=4, num_test_good=2, num_anomaly=3,
               mask_foreground=1) -> dict:
    """Raw VisA: split_csv/1cls.csv + <object>/Data/Images/{Normal,Anomaly}/*.JPG + 0/1 masks."""
    rows, written = [], {"train": [], "test": [], "masks": {}}
    for i in range(num_train + num_test_good):
        relative = f"{category}/Data/Images/Normal/{i:04d}.JPG"
        _save(image_array((category, "normal", i)), os.path.join(root, relative), format="JPEG", quality=92)
        split = "train" if i < num_train else "test"
        rows.append((category, split, "normal", relative, ""))
        written[split].append((os.path.join(root, relative), "good") if split == "test"
                              else os.path.join(root, relative))
    for i in range(num_anomaly):
        relative = f"{category}/Data/Images/Anomaly/{i:03d}.JPG"
        mask_relative = f"{category}/Data/Masks/Anomaly/{i:03d}.png"
        _save(image_array((category, "anomaly", i)), os.path.join(root, relative), format="JPEG", quality=92)
        mask = mask_array((category, "anomaly", i), foreground=mask_foreground)
        _save(mask, os.path.join(root, mask_relative))
        rows.append((category, "test", "anomaly", relative, mask_relative))
        written["test"].append((os.path.join(root, relative), "anomaly"))
        written["masks"][os.path.join(root, relative)] = os.path.join(root, mask_relative)
    rows.append(("other", "train", "normal", "other/Data/Images/Normal/0000.JPG", ""))  # another object
    os.makedirs(os.path.join(root, "split_csv"), exist_ok=True)
    with open(os.path.join(root, "split_csv", "1cls.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("object", "split", "label", "image", "mask"))
        writer.writerows(rows)
    return written


def write_mvtec_3d(root, category="bagel", *, num_train=3, num_validation=2, num_test_good=2,
                   defects=(("crack", 2),)) -> dict:
    """MVTec 3D-AD: <split>/<defect>/{rgb/*.png, xyz/*.tiff, gt/*.png}."""
    written = {"train": [], "validation": [], "test": [], "masks": {}}

    def item(split, defect, i, with_gt):
        folder = os.path.join(root, category, split, defect)
        path = os.path.join(folder, "rgb", f"{i:03d}.png")
        _save(image_array((category, split, defect, i)), path)
        _save(np.zeros(SIZE, np.float32), os.path.join(folder, "xyz", f"{i:03d}.tiff"))
        if with_gt:
            foreground = 255 if defect != "good" else 0
            mask = os.path.join(folder, "gt", f"{i:03d}.png")
            _save(mask_array((category, split, defect, i), foreground=foreground), mask)
            if defect != "good":
                written["masks"][path] = mask
        return path

    written["train"] = [item("train", "good", i, True) for i in range(num_train)]
    written["validation"] = [item("validation", "good", i, True) for i in range(num_validation)]
    written["test"] = [(item("test", "good", i, True), "good") for i in range(num_test_good)]
    for defect, count in defects:
        written["test"] += [(item("test", defect, i, True), defect) for i in range(count)]
    return written


def write_btad(root, product="01", *, num_train=3, num_test_good=2, num_ko=2) -> dict:
    """BTAD: <product>/train/ok/*.bmp, test/{ok,ko}/*.bmp, ground_truth/ko/*.png."""
    base = os.path.join(root, product)
    written = {"train": [], "test": [], "masks": {}}
    for i in range(num_train):
        path = os.path.join(base, "train", "ok", f"{i:04d}.bmp")
        _save(image_array((product, "train", i)), path)
        written["train"].append(path)
    for i in range(num_test_good):
        path = os.path.join(base, "test", "ok", f"{i:04d}.bmp")
        _save(image_array((product, "ok", i)), path)
        written["test"].append((path, "good"))
    for i in range(num_ko):
        path = os.path.join(base, "test", "ko", f"{i:04d}.bmp")
        _save(image_array((product, "ko", i)), path)
        mask = os.path.join(base, "ground_truth", "ko", f"{i:04d}.png")
        _save(mask_array((product, "ko", i)), mask)
        written["test"].append((path, "ko"))
        written["masks"][path] = mask
    return written


def write_vad(root) -> dict:
    """Valeo VAD: train/{good,bad}, test/{good,bad,bad_unseen_defects}; no masks."""
    written = {"train": [], "test": [], "masks": {}}
    for split, folder, count in (("train", "good", 3), ("train", "bad", 2), ("test", "good", 2),
                                 ("test", "bad", 2), ("test", "bad_unseen_defects", 1)):
        for i in range(count):
            path = os.path.join(root, split, folder, f"{i:04d}.png")
            _save(image_array(("vad", split, folder, i)), path)
            if split == "train" and folder == "good":
                written["train"].append(path)
            elif split == "test":
                written["test"].append((path, folder))
    return written


def write_elpv(root) -> dict:
    """ELPV: labels.csv ('images/cellNNNN.png  <probability>  <type>') + grayscale images."""
    entries = [("mono", 0.0)] * 5 + [("mono", 1.0), ("mono", 1 / 3), ("poly", 0.0), ("poly", 2 / 3)]
    lines = []
    for i, (cell_type, probability) in enumerate(entries):
        relative = f"images/cell{i + 1:04d}.png"
        _save(image_array(("elpv", i), size=(30, 30), grayscale=True), os.path.join(root, relative))
        lines.append(f"{relative}  {probability!r:<20} {cell_type}")
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return {"entries": entries}
