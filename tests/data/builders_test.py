"""Each builder prepares from a tiny dataset in its real layout; records are checked against the files."""

import os

import numpy as np
from PIL import Image

import rgpkd_jax.data as data_lib
from rgpkd_jax.data import elpv, pipeline, preprocess
from tests.data import fixtures

SIZE = 32


def _reference_image(path):
    """The official loader: PIL RGB, bilinear resize, [0, 1], ImageNet normalisation (numpy, independent)."""
    rgb = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return (np.asarray(rgb, np.float32) / 255 - [0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225],
                                                                                    np.float32)


def _reference_mask(path):
    values = np.asarray(Image.open(path).convert("L"))
    if values.max() == 1:
        values = values * 255
    resized = Image.fromarray(values.astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return (np.asarray(resized, np.float32) / 255 > 0.5).astype(np.float32)


def _config(name, category, data_dir, manual_dir):
    import ml_collections
    return ml_collections.ConfigDict({
        "seed": 0,
        "dataset": {"name": name, "category": category, "data_dir": data_dir, "manual_dir": manual_dir,
                    "image_size": SIZE},
        "train": {"batch_size": 2},
    })


def _read_all(config, split):
    batches = list(pipeline.test_batches(config, batch_size=4, split=split))
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _check(config, root, written, *, masks=True):
    """Counts, order, labels, defect types, images and masks of the prepared splits."""
    train = _read_all(config, "train")
    expected_train = sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in written["train"])
    assert list(train["file_name"]) == expected_train
    assert (train["label"] == 0).all() and set(train["defect_type"]) == {"good"}
    assert not train["mask"].any()

    test = _read_all(config, "test")
    expected = sorted((os.path.relpath(p, root).replace(os.sep, "/"), d) for p, d in written["test"])
    assert list(zip(test["file_name"], test["defect_type"])) == expected
    np.testing.assert_array_equal(test["label"], [int(d != "good") for _, d in expected])
    np.testing.assert_array_equal(test["index"], np.arange(len(expected)))
    for i, (relative, _) in enumerate(expected):
        path = os.path.join(root, relative)
        np.testing.assert_allclose(test["image"][i], _reference_image(path), atol=1e-5, err_msg=relative)
        if masks and path in written["masks"]:
            reference = _reference_mask(written["masks"][path])
            assert reference.any(), relative
            np.testing.assert_array_equal(test["mask"][i], reference, err_msg=relative)
        else:
            assert not test["mask"][i].any(), relative
    return train, test


def test_mvtec_ad_color_and_grayscale(tmp_path):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle")
    gray = fixtures.write_mvtec(root, "grid", grayscale=True)
    data_dir = str(tmp_path / "tfds")
    _check(_config("mvtec_ad", "bottle", data_dir, root), root, written)
    _, test = _check(_config("mvtec_ad", "grid", data_dir, root), root, gray)
    # Grayscale becomes three equal channels before normalisation.
    restored = preprocess.denormalize(test["image"])
    np.testing.assert_allclose(restored[..., 0], restored[..., 2], atol=1e-6)


def test_mpdd_and_archive_wrapper_folder(tmp_path):
    # Archives often extract into one extra folder; the builder finds the categories below it.
    root = str(tmp_path / "mpdd")
    written = fixtures.write_mvtec(os.path.join(root, "MPDD"), "tubes")
    _check(_config("mpdd", "tubes", str(tmp_path / "tfds"), root), os.path.join(root, "MPDD"), written)


def test_folder_discovers_categories(tmp_path):
    root = str(tmp_path / "mine")
    written = fixtures.write_mvtec(root, "part_a", image_ext=".jpg")
    fixtures.write_mvtec(root, "part_b")
    assert data_lib.categories("folder", root) == ["part_a", "part_b"]
    _check(_config("folder", "part_a", str(tmp_path / "tfds"), root), root, written)


def test_visa_raw_layout_with_zero_one_masks(tmp_path):
    root = str(tmp_path / "VisA_20220922")
    written = fixtures.write_visa(root, "candle", mask_foreground=1)
    config = _config("visa", "candle", str(tmp_path / "tfds"), root)
    _, test = _check(config, root, written)
    assert test["mask"][test["label"] == 1].sum() > 0  # 0/1 masks did not vanish


def test_visa_converted_mvtec_layout(tmp_path):
    # VisA_pytorch/1cls: MVTec layout with JPG images and <name>.png masks.
    root = str(tmp_path / "visa_1cls")
    written = fixtures.write_mvtec(root, "pcb1", image_ext=".JPG", mask_suffix="")
    _check(_config("visa", "pcb1", str(tmp_path / "tfds"), root), root, written)


def test_mvtec_3d_ad_rgb_and_gt(tmp_path):
    root = str(tmp_path / "mvtec3d")
    written = fixtures.write_mvtec_3d(root, "bagel")
    config = _config("mvtec_3d_ad", "bagel", str(tmp_path / "tfds"), root)
    _check(config, root, written)
    validation = _read_all(config, "validation")
    assert len(validation["label"]) == len(written["validation"]) and not validation["label"].any()
    assert all(name.endswith(".png") and "/rgb/" in name for name in validation["file_name"])


def test_btad_bmp_images(tmp_path):
    root = str(tmp_path / "BTech_Dataset_transformed")
    written = fixtures.write_btad(root, "01")
    _check(_config("btad", "01", str(tmp_path / "tfds"), root), root, written)


def test_valeo_vad_image_labels_only(tmp_path):
    root = str(tmp_path / "vad")
    written = fixtures.write_vad(root)
    _, test = _check(_config("valeo_vad", "vad", str(tmp_path / "tfds"), root), root, written, masks=False)
    assert set(test["defect_type"]) == {"good", "bad", "bad_unseen_defects"}


def test_elpv_mono_poly_split(tmp_path):
    root = str(tmp_path / "elpv")
    entries = fixtures.write_elpv(root)["entries"]
    config = _config("elpv", "mono", str(tmp_path / "tfds"), root)
    train, test = _read_all(config, "train"), _read_all(config, "test")
    mono = [(i, p) for i, (kind, p) in enumerate(entries) if kind == "mono"]
    good = [f"images/cell{i + 1:04d}.png" for i, p in mono if p == 0]
    # Every TEST_EVERY-th good cell is held out for test.
    held_out = good[elpv.TEST_EVERY - 1::elpv.TEST_EVERY]
    assert list(train["file_name"]) == [g for g in good if g not in held_out]
    assert sorted(test["file_name"][test["label"] == 0]) == held_out
    defective = sorted(f"images/cell{i + 1:04d}.png" for i, p in mono if p > 0)
    assert sorted(test["file_name"][test["label"] == 1]) == defective
    assert set(test["defect_type"][test["label"] == 1]) == {"p100", "p033"}
    poly = _read_all(_config("elpv", "poly", str(tmp_path / "tfds"), root), "test")
    assert list(poly["defect_type"]) == ["p067"]
