"""configs/<file>.py[:arg] + key=value overrides: the loader the benchmarks and tests share."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from rgpkd_jax.config_files import ConfigError, apply_overrides, load_config
from tests.helpers import REPO, one_error_line, run_module


def test_loads_a_config_file_with_its_argument_and_overrides():
    config = load_config(os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny"),
                         ["train.epochs=3", "model.skips=True", "eval.sigma=2.5"])
    assert (config.dataset.name, config.dataset.category, config.dataset.image_size) == ("synthetic", "grid", 64)
    assert config.train.epochs == 3 and config.model.skips is True and config.eval.sigma == 2.5


def test_paths_are_relative_to_the_working_directory_then_the_packages_configs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # any folder but the clone
    assert load_config("configs/sk_rd4ad.py").model.skips is True  # the package's own
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "sk_rd4ad.py").write_text(
        "from rgpkd_jax import config_base\n"
        "def get_config(arg=None):\n"
        "    c = config_base.build('sk_rd4ad', arg)\n"
        "    c.train.epochs = 7\n"
        "    return c\n")
    assert load_config("configs/sk_rd4ad.py").train.epochs == 7  # a file in the working directory wins
    with pytest.raises(ConfigError, match=r"configs/rdd4ad.py not found .*working directory .*"
                                          r"configs/<name>.py for the package's: configs/demo.py, .*configs/rd4ad.py"):
        load_config("configs/rdd4ad.py")
    with pytest.raises(ConfigError, match="elsewhere/rd4ad.py not found"):
        load_config("elsewhere/rd4ad.py")  # only configs/<name>.py means the package's


def test_the_command_line_finds_the_packages_configs_from_any_folder(tmp_path):
    """--config configs/<name>.py from outside the clone (where configs/ is not) works, and a
    missing config file is one error line, not ml_collections' traceback."""
    run = run_module("rgpkd_jax.main", "--config", "configs/rd4ad.py:synthetic/grid,tiny",
                     "--config.dataset.image_size=-64", "--workdir", tmp_path / "workdir", cwd=str(tmp_path))
    assert "dataset.image_size=-64" in one_error_line(run)  # the file was found: preflight ran on it
    for spec, expected in (("configs/rdd4ad.py:synthetic/grid", "config file configs/rdd4ad.py not found"),
                           ("configs/rd4ad.py:grid", "config argument 'grid' must look like 'dataset/category'")):
        run = run_module("rgpkd_jax.main", "--config", spec, "--workdir", tmp_path / "workdir", cwd=str(tmp_path))
        assert one_error_line(run).startswith(f"error: {expected}") and run.stderr.count("\n") == 1
    assert not (tmp_path / "workdir").exists()


def test_an_installed_wheel_carries_the_configs(tmp_path):
    """A non-editable install has no clone beside it: the wheel ships configs/ as
    rgpkd_jax/configs, which `configs/<name>.py` finds from any folder."""
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    for name in tracked:
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy(os.path.join(REPO, name), source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "wheel").iterdir()
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.startswith("rgpkd_jax/configs/")}
    assert shipped == {f"rgpkd_jax/configs/{n}" for n in os.listdir(os.path.join(REPO, "configs")) if n.endswith(".py")}
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    code = ("from rgpkd_jax import config_files\n"
            "print(config_files.__file__, config_files.load_config('configs/rd4ad.py:visa/pcb1').dataset.category)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [str(tmp_path / "site" / "rgpkd_jax" / "config_files.py"), "pcb1"]


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
