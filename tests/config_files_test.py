"""configs/<file>.py[:arg] + key=value overrides: the loader the benchmarks and tests share."""

import os

import pytest

from rgpkd_jax.config_files import ConfigError, apply_overrides, load_config
from tests.helpers import REPO


def test_loads_a_config_file_with_its_argument_and_overrides():
    config = load_config(os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny"),
                         ["train.epochs=3", "model.skips=True", "eval.sigma=2.5"])
    assert (config.dataset.name, config.dataset.category, config.dataset.image_size) == ("synthetic", "grid", 64)
    assert config.train.epochs == 3 and config.model.skips is True and config.eval.sigma == 2.5


def test_paths_are_relative_to_the_working_directory(monkeypatch):
    monkeypatch.chdir(REPO)
    assert load_config("configs/sk_rd4ad.py").model.skips is True
    monkeypatch.chdir(os.path.join(REPO, "tests"))
    with pytest.raises(ConfigError, match=r"configs/sk_rd4ad.py not found .*working directory"):
        load_config("configs/sk_rd4ad.py")


@pytest.mark.parametrize("override,message", [
    ("train.epoch=3", "train has no key 'epoch'"),
    ("trian.epochs=3", "the config has no key 'trian'"),
    ("train.epochs=three", "train.epochs is int"),
    ("model.skips=maybe", "is a bool"),
    ("train.epochs", "write key.sub=value"),
])
def test_bad_overrides_name_the_key(override, message):
    config = load_config(os.path.join(REPO, "configs", "rd4ad.py"))
    with pytest.raises(ConfigError, match=message):
        apply_overrides(config, [override])
