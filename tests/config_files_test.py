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


def test_layers_apply_in_order_and_lock_the_config():
    """Method defaults, then the argument's dataset, then tiny, then the method's own tiny; after
    the method layer no key can be added, so a mistyped key in a later layer is an error."""
    from rgpkd_jax import config_base

    def defaults(c):
        c.model.width = 64
        c.dataset.image_size = 128

    def tiny(c):
        c.model.width = 16

    plain = config_base.build("rd4ad", "visa/pcb1", defaults=defaults, tiny=tiny)
    assert (plain.dataset.name, plain.dataset.category, plain.dataset.image_size) == ("visa", "pcb1", 128)
    assert plain.model.width == 64
    shrunk = config_base.build("rd4ad", "visa/pcb1,tiny", defaults=defaults, tiny=tiny)
    assert shrunk.dataset.image_size == 64 and shrunk.model.width == 16 and shrunk.teacher.arch == "resnet18"
    with pytest.raises(AttributeError, match="widht"):
        config_base.build("rd4ad", "visa/pcb1,tiny", defaults=defaults, tiny=lambda c: setattr(c.model, "widht", 8))
    with pytest.raises(AttributeError):
        plain.train.epoch = 3


def test_tiny_shrinks_the_demo_config_too():
    demo = load_config(os.path.join(REPO, "configs", "demo.py"))
    tiny = load_config(os.path.join(REPO, "configs", "demo.py:synthetic/grid,tiny"))
    assert (demo.dataset.image_size, demo.train.epochs) == (128, 20)
    assert (tiny.dataset.image_size, tiny.train.epochs) == (64, 2)
