"""Bad input: every case gives a DatasetError that names the file or option, and nothing half-prepared."""

import os

import pytest
from PIL import Image

import rgpkd_jax.data as data_lib
from rgpkd_jax import download
from rgpkd_jax.data import DatasetError, pipeline, source
from tests.data import fixtures
from tests.data.builders_test import _config


def _prepare(tmp_path, root, name="mvtec_ad", category="bottle"):
    builder = data_lib.get_builder(name, category, data_dir=str(tmp_path / "tfds"), manual_dir=root)
    data_lib.prepare(builder, root)
    return builder


def _assert_nothing_prepared(tmp_path):
    """No dataset_info.json anywhere: a failed run never looks complete."""
    for _, _, files in os.walk(tmp_path / "tfds"):
        assert "dataset_info.json" not in files


def test_missing_manual_dir(tmp_path):
    with pytest.raises(DatasetError, match="(?s)does not exist.*Download mvtec_anomaly_detection"):
        _prepare(tmp_path, str(tmp_path / "nowhere"))
    _assert_nothing_prepared(tmp_path)


def test_empty_manual_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        _prepare(tmp_path, str(tmp_path / "empty"))


def test_no_manual_dir_and_no_download(tmp_path):
    with pytest.raises(DatasetError, match="(?s)--manual_dir.*--download"):
        _prepare(tmp_path, None)


def test_unknown_dataset_and_category(tmp_path):
    with pytest.raises(DatasetError, match="Unknown dataset 'mvtec'"):
        data_lib.get_builder("mvtec", "bottle")
    with pytest.raises(DatasetError, match="no category 'bottel'.*dataset.category"):
        data_lib.get_builder("mvtec_ad", "bottel")
    root = str(tmp_path / "mine")
    fixtures.write_mvtec(root, "part_a")
    with pytest.raises(DatasetError, match="No category 'part_b'.*part_a"):
        data_lib.get_builder("folder", "part_b", manual_dir=root)


def test_category_folder_missing_from_manual_dir(tmp_path):
    root = str(tmp_path / "mvtec")
    fixtures.write_mvtec(root, "cable")
    with pytest.raises(DatasetError, match="'bottle' not found in .*mvtec"):
        _prepare(tmp_path, root)


def test_a_category_folder_given_as_manual_dir_gets_a_hint(tmp_path):
    root = str(tmp_path / "mvtec")
    fixtures.write_mvtec(root, "bottle")
    category = os.path.join(root, "bottle")
    with pytest.raises(DatasetError, match=f"looks like one category's folder .*pass its parent {root} as manual "
                                           "dir, and 'bottle' as the category"):
        _prepare(tmp_path, category)
    with pytest.raises(DatasetError, match=f"pass its parent {root} as manual dir, and 'bottle' as the category"):
        data_lib.get_builder("folder", "bottle", manual_dir=category)


def test_a_folder_builder_does_not_announce_its_custom_config(tmp_path, caplog):
    """tfds's "Using custom data configuration" warning came 3-5 times a run: a folder builder's
    config is always its own."""
    root = str(tmp_path / "mine")
    fixtures.write_mvtec(root, "part")
    with caplog.at_level("WARNING"):
        for _ in range(2):
            data_lib.get_builder("folder", "part", data_dir=str(tmp_path / "tfds"), manual_dir=root)
    assert not [r for r in caplog.records if "custom data configuration" in r.getMessage()]


def test_folder_dataset_without_manual_dir_names_the_option():
    with pytest.raises(DatasetError, match=r"set --config.dataset.manual_dir \(prepare: --manual_dir\)"):
        data_lib.get_builder("folder", "part", manual_dir=None)


def test_files_with_other_suffixes_are_named_and_webp_is_read(tmp_path, caplog):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle", num_train=3)
    train_good = os.path.dirname(written["train"][0])
    Image.open(written["train"][0]).save(os.path.join(train_good, "003.webp"), lossless=True)
    Image.open(written["train"][1]).save(os.path.join(train_good, "004.gif"))
    open(os.path.join(train_good, "notes.txt"), "w").close()
    open(os.path.join(train_good, ".DS_Store"), "w").close()  # hidden: skipped without a word
    with caplog.at_level("WARNING"):
        builder = _prepare(tmp_path, root)
    assert builder.info.splits["train"].num_examples == 4  # 000-002.png and 003.webp
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert warnings and all(w == f"{train_good}: skipping 2 file(s) whose suffix is not an image's (.png .jpg "
                                 ".jpeg .bmp .tif .tiff .webp): 004.gif, notes.txt" for w in warnings)


def test_corrupt_image_names_file_and_leaves_nothing(tmp_path):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle")
    broken = written["test"][-1][0]
    with open(broken, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match=f"Cannot decode image {broken}.*corrupt"):
        _prepare(tmp_path, root)
    _assert_nothing_prepared(tmp_path)
    builder = data_lib.get_builder("mvtec_ad", "bottle", data_dir=str(tmp_path / "tfds"))
    assert not data_lib.is_prepared(builder)


def test_defect_without_mask(tmp_path):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle")
    image, _ = written["test"][-1]
    os.remove(written["masks"][image])
    relative = os.path.relpath(image, root)
    with pytest.raises(DatasetError, match=f"{relative} has no ground-truth mask"):
        _prepare(tmp_path, root)
    _assert_nothing_prepared(tmp_path)


def test_empty_training_folder(tmp_path):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle")
    for path in written["train"]:
        os.remove(path)
    with pytest.raises(DatasetError, match="train/good .*has no images"):
        _prepare(tmp_path, root)


def test_mask_of_other_shape_is_an_error(tmp_path):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle")
    mask = written["masks"][written["test"][-1][0]]
    Image.new("L", (48, 48), 255).save(mask)  # image is 48x40
    with pytest.raises(DatasetError, match=f"Mask {mask} is 48x48 but its image .* is 48x40"):
        _prepare(tmp_path, root)


def test_mask_at_other_resolution_is_resized(tmp_path):
    root = str(tmp_path / "mvtec")
    written = fixtures.write_mvtec(root, "bottle", defects=(("crack", 1),))
    image, _ = written["test"][-1]
    mask = written["masks"][image]
    Image.open(mask).resize((96, 80), Image.Resampling.NEAREST).save(mask)  # same aspect, twice the size
    builder = _prepare(tmp_path, root)
    source = builder.as_data_source(split="test")
    record = next(source[i] for i in range(len(source)) if source[i]["label"] == 1)
    assert record["mask"].shape[:2] == (40, 48)
    original = fixtures.mask_array(("bottle", "crack", 0)) > 127
    assert ((record["mask"][..., 0] > 127) == original).mean() > 0.97


def test_pipeline_without_manual_dir_names_prepare_command(tmp_path):
    config = _config("mvtec_ad", "bottle", str(tmp_path / "tfds"), None)
    command = "python -m rgpkd_jax.data.prepare --dataset mvtec_ad --category bottle"
    with pytest.raises(DatasetError, match=command):
        pipeline.num_examples(config, "train")


def test_download_checks_digest_and_keeps_nothing_on_mismatch(tmp_path):
    archive = tmp_path / "served" / "data.zip"
    archive.parent.mkdir()
    import zipfile
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("top/bottle/readme.txt", "hello")
    url = archive.as_uri()
    with pytest.raises(DatasetError, match="expected 0000"):
        source.fetch(url, "sha256", "0000", str(tmp_path / "dl"))
    assert os.listdir(tmp_path / "dl") == []
    digest = download.file_digest(str(archive), "md5")
    path = source.fetch(url, "md5", digest, str(tmp_path / "dl"))
    extracted = source.extract(path, str(tmp_path / "dl" / "extracted" / "x"))
    assert open(os.path.join(extracted, "top", "bottle", "readme.txt")).read() == "hello"
    assert os.listdir(tmp_path / "dl" / "extracted") == ["x"]  # no temporary folder left
