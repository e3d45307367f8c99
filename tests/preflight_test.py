"""A run that cannot start says why in one line before it prepares data, loads weights or writes into
its workdir (rgpkd_jax/preflight.py)."""

import os
import shutil
import subprocess
import sys

import pytest

from rgpkd_jax import preflight
from rgpkd_jax.config_files import ConfigError, load_config
from tests.data import fixtures
from tests.helpers import REPO, one_error_line, run_module

TINY = os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny")


def test_every_bad_value_is_named_in_one_error():
    bad = ["dataset.image_size=-64", "train.batch_size=0", "eval.fpr_limit=1.5",
           "train.teacher_cache_budget_mib=-1.0"]
    config = load_config(TINY, bad + ["train.teacher_cache=on"])
    with pytest.raises(ConfigError) as error:
        preflight.check_run(config, "train")
    message = str(error.value)
    assert "\n" not in message
    for named in bad + ["train.teacher_cache='on'"]:
        assert named in message


def test_an_image_side_off_the_grid_gets_the_nearest_valid_one():
    config = load_config(TINY, ["dataset.image_size=100"])
    with pytest.raises(ConfigError, match=r"dataset.image_size=100 must be a multiple of 32 \(e.g. 96\)"):
        preflight.check_run(config, "eval")


def test_absent_teacher_weights_stop_training_but_not_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("RGPKD_JAX_CACHE", str(tmp_path))  # an empty cache: no converted weights
    config = load_config(TINY, ["teacher.weights=imagenet", "teacher.fallback_to_random=False"])
    for mode in preflight.TRAINING_MODES:
        with pytest.raises(FileNotFoundError, match="python -m rgpkd_jax.convert --arch resnet18 --download"):
            preflight.check_run(config, mode)
    preflight.check_run(config, "eval")  # its teacher is the one the checkpoint records
    preflight.check_run(load_config(TINY, ["teacher.weights=imagenet", "teacher.fallback_to_random=True"]), "train")
    missing = load_config(TINY, [f"teacher.weights={tmp_path / 'absent.pth'}"])
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        preflight.check_run(missing, "train")


@pytest.mark.parametrize("overrides", [
    ["--config.dataset.image_size=-64"],
    ["--config.teacher.weights=imagenet", "--config.teacher.fallback_to_random=False"],
], ids=["negative_image_size", "absent_weights"])
def test_main_reports_in_one_line_and_leaves_nothing_behind(tmp_path, overrides):
    data_dir, workdir = tmp_path / "data", tmp_path / "workdir"
    env = {**os.environ, "PYTHONPATH": REPO, "RGPKD_JAX_DATA": str(data_dir),
           "RGPKD_JAX_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "rgpkd_jax.main", "--config", TINY, "--workdir", str(workdir),
                          "--mode", "train", *overrides], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert not workdir.exists()   # no run_info.json, no checkpoints/
    assert not data_dir.exists()  # the dataset was not prepared first


def _break_folder(root, how):
    written = fixtures.write_mvtec(root, "part")
    if how in ("no_manual_dir_option", "category_folder"):
        return  # the folder is fine; the command line is not
    if how == "missing_mask":
        os.remove(next(iter(written["masks"].values())))
    elif how == "empty_train_folder":
        for path in written["train"]:
            os.remove(path)
    elif how == "no_test_folder":
        shutil.rmtree(os.path.join(root, "part", "test"))
    elif how == "no_manual_dir":
        shutil.rmtree(root)


@pytest.mark.parametrize("how, expected", [
    ("missing_mask", "part/test/crack/000.png has no ground-truth mask"),
    ("empty_train_folder", "train/good (training images) has no images"),
    ("no_test_folder", "part/test (test images)"),
    ("no_manual_dir", "parts' does not exist"),
    ("no_manual_dir_option", "set --config.dataset.manual_dir (prepare: --manual_dir)"),
    ("category_folder", "looks like one category's folder (it holds train/): pass its parent"),
])
def test_dataset_errors_through_main_are_one_line_and_leave_no_folders(tmp_path, how, expected):
    """What a user's own folder gets wrong is reported by main as one 'error:' line, no traceback,
    and leaves no empty workdir nor data folders behind."""
    root = str(tmp_path / "parts")
    _break_folder(root, how)
    manual_dir = {"no_manual_dir_option": [], "category_folder": [f"--config.dataset.manual_dir={root}/part"]}.get(
        how, [f"--config.dataset.manual_dir={root}"])
    run = run_module("rgpkd_jax.main", "--config", os.path.join(REPO, "configs", "rd4ad.py:folder/part,tiny"),
                     *manual_dir, "--config.teacher.weights=random", "--workdir", tmp_path / "workdir",
                     "--mode", "train", env={"RGPKD_JAX_DATA": str(tmp_path / "data"),
                                             "RGPKD_JAX_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert expected in one_error_line(run)
    assert not (tmp_path / "workdir").exists() and not (tmp_path / "data").exists()
