"""What prepare checks in the source folder: defective images with empty masks are named, and a
prepared copy whose source files changed since is refused until it is prepared again (--force)."""

import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import rgpkd_jax.data as data_lib
from rgpkd_jax.data import pipeline
from rgpkd_jax.data.errors import DatasetError
from tests.data import fixtures
from tests.helpers import run_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(data_dir, manual_dir):
    import ml_collections
    return ml_collections.ConfigDict({
        "seed": 0, "train": {"batch_size": 2},
        "dataset": {"name": "mvtec_ad", "category": "bottle", "data_dir": str(data_dir),
                    "manual_dir": str(manual_dir), "image_size": 16}})


def _test_file_names(config):
    return [name for batch in pipeline.test_batches(config, batch_size=8) for name in batch["file_name"]]


def test_prepare_command_names_defective_images_with_empty_masks(tmp_path):
    root = tmp_path / "src"
    written = fixtures.write_mvtec(str(root), "bottle", num_train=2, num_test_good=1,
                                   defects=(("crack", 2), ("hole", 1)))
    blank = [path for path in written["masks"].values() if "crack" in path]
    for mask in blank:
        Image.fromarray(np.zeros(fixtures.SIZE, np.uint8)).save(mask)
    run = subprocess.run(
        [sys.executable, "-m", "rgpkd_jax.data.prepare", "--dataset", "mvtec_ad", "--category", "bottle",
         "--manual_dir", str(root), "--data_dir", str(tmp_path / "tfds")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    warning = [line for line in run.stderr.splitlines() if "empty mask" in line]
    assert len(warning) == 1, run.stderr
    assert "test split: 2 defective images have an empty mask" in warning[0]
    assert "bottle/test/crack/000.png, bottle/test/crack/001.png" in warning[0]
    assert "hole" not in warning[0]


def test_changed_source_is_refused_until_prepared_again_with_force(tmp_path):
    root = tmp_path / "src"
    fixtures.write_mvtec(str(root), "bottle", num_train=2, num_test_good=1, defects=(("crack", 1),))
    config = _config(tmp_path / "tfds", root)
    assert len(_test_file_names(config)) == 2  # prepared on first use
    added = root / "bottle" / "test" / "good" / "001.png"
    Image.fromarray(fixtures.image_array("added")).save(added)
    builder = data_lib.get_builder("mvtec_ad", "bottle", data_dir=str(tmp_path / "tfds"))
    for use in (lambda: _test_file_names(config), lambda: data_lib.prepare(builder, str(root))):
        with pytest.raises(DatasetError, match=r"changed since.*5 files.*now 6 files.*--force$"):
            use()
    data_lib.prepare(builder, str(root), force=True)
    assert "bottle/test/good/001.png" in _test_file_names(config)


def test_the_advised_prepare_command_works_for_a_folder_dataset(tmp_path):
    """A folder category's prepared copy is named `<category>-<hash of the path>`; the error advises
    the command with the category the user knows, and that command prepares it again."""
    root = tmp_path / "my parts"  # a space, as user folders have
    fixtures.write_mvtec(str(root), "bracket", num_train=2, num_test_good=1, defects=(("crack", 1),))
    config = _config(tmp_path / "tfds", root)
    config.dataset.name, config.dataset.category = "folder", "bracket"
    assert len(_test_file_names(config)) == 2
    Image.fromarray(fixtures.image_array("added")).save(root / "bracket" / "test" / "good" / "001.png")
    with pytest.raises(DatasetError) as error:
        _test_file_names(config)
    message = str(error.value)
    assert message.startswith(f"folder/bracket: the files in {root} changed since")
    command = shlex.split(message.split("Prepare it again: ", 1)[1])
    assert command[:3] == ["python", "-m", "rgpkd_jax.data.prepare"] and command[command.index("--category") + 1] == "bracket"
    run = run_module(*command[2:])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "bracket/test/good/001.png" in _test_file_names(config)


def test_rewritten_file_of_the_same_size_is_a_change(tmp_path):
    root = tmp_path / "src"
    written = fixtures.write_mvtec(str(root), "bottle", num_train=2, num_test_good=1, defects=(("crack", 1),))
    config = _config(tmp_path / "tfds", root)
    _test_file_names(config)
    mask = next(iter(written["masks"].values()))
    stat = os.stat(mask)
    os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten a second later
    with pytest.raises(DatasetError, match="changed since"):
        _test_file_names(config)


def test_moved_or_deleted_source_keeps_the_prepared_copy_usable(tmp_path):
    root = tmp_path / "src"
    fixtures.write_mvtec(str(root), "bottle", num_train=2, num_test_good=1, defects=(("crack", 1),))
    expected = _test_file_names(_config(tmp_path / "tfds", root))
    moved = tmp_path / "elsewhere"
    shutil.move(str(root), str(moved))  # a rename keeps sizes and modification times
    assert _test_file_names(_config(tmp_path / "tfds", moved)) == expected
    shutil.rmtree(moved)
    assert _test_file_names(_config(tmp_path / "tfds", moved)) == expected


def test_image_sizes_are_the_original_files(tmp_path):
    """What the example sheet draws each image's aspect from: the files' sizes, not the model's square."""
    root = tmp_path / "src"
    fixtures.write_mvtec(str(root), "bottle", num_train=2, num_test_good=1, defects=(("crack", 1),))
    config = _config(tmp_path / "tfds", root)
    assert pipeline.image_sizes(config, "test", [0, 1]) == {0: fixtures.SIZE, 1: fixtures.SIZE}  # (40, 48)
