"""The one way to load a config outside `--config` flags: ``configs/<file>.py[:arg]`` plus overrides.

``load_config("configs/rd4ad.py:mvtec_ad/bottle", ["train.epochs=10"])`` does what
``--config configs/rd4ad.py:mvtec_ad/bottle --config.train.epochs=10`` does on the command line
(whose ``--config`` flags :func:`DEFINE_config_file` defines): the file's ``get_config(arg)``, then
each ``key.sub=value`` parsed as the type of the value it replaces. Paths are relative to the
working directory; ``configs/<name>.py`` that is not there is the package's own config file (the
repository's ``configs/``, which installs as ``rgpkd_jax/configs``: setup.py), so the shipped
configs work from any folder. A mistyped key is an error naming the keys that exist.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import uuid
from typing import Sequence

import ml_collections
from absl import flags, logging
from ml_collections import config_flags

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which and how to fix it."""


def shipped_configs_dir() -> str | None:
    """The folder of the package's config files: ``rgpkd_jax/configs`` where the package is
    installed from a wheel, the repository's ``configs/`` in a clone or an editable install."""
    for folder in (os.path.join(_PACKAGE_DIR, "configs"), os.path.join(os.path.dirname(_PACKAGE_DIR), "configs")):
        if os.path.isdir(folder):
            return folder
    return None


def resolve_config_file(path: str) -> str:
    """``path`` if it is a file (relative to the working directory); else, for ``configs/<name>.py``,
    the package's file of that name; else one error listing the package's config files."""
    path = os.path.expanduser(path)
    if os.path.isfile(path):
        return path
    shipped = shipped_configs_dir()
    folder, name = os.path.split(os.path.normpath(path))
    if shipped and folder == "configs" and os.path.isfile(os.path.join(shipped, name)):
        logging.info("config file %s: not in %s, using the package's %s", path, os.getcwd(), os.path.join(shipped, name))
        return os.path.join(shipped, name)
    names = sorted(n for n in os.listdir(shipped) if n.endswith(".py") and not n.startswith("_")) if shipped else []
    raise ConfigError(f"config file {path} not found (relative to the working directory {os.getcwd()}); "
                      f"give the path of a config file, or configs/<name>.py for the package's: "
                      f"{', '.join('configs/' + n for n in names) or 'none installed'}")


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """``path.py[:arg]`` -> ``get_config(arg)`` with ``overrides`` applied."""
    path, _, arg = spec.partition(":")
    path = resolve_config_file(path)
    module_spec = importlib.util.spec_from_file_location(f"_rgpkd_config_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg)")
    config = module.get_config(arg or None)
    return apply_overrides(config, overrides)


class _ConfigFileParser(flags.ArgumentParser):
    """The parser of a config-file flag: :func:`load_config` (the path resolution, one-line errors)
    where ml_collections' own gives a traceback for a missing file; the config comes back locked."""

    def parse(self, argument):
        return load_config(argument).lock()

    def flag_type(self):
        return "config object"


def DEFINE_config_file(name: str, help_string: str) -> flags.FlagHolder:  # noqa: N802 - absl's style
    """``config_flags.DEFINE_config_file`` (locked; overrides ``--<name>.key=value``) whose file is
    found as :func:`load_config` finds it. A ConfigError is printed in one line (``cli.parse_flags``)."""
    holder = config_flags.DEFINE_config_file(name, None, help_string, lock_config=True)
    flags.FLAGS[name].parser = _ConfigFileParser()
    return holder


def _parse_value(text: str, current, key: str):
    """``text`` as the type of the field's current value; a clear error otherwise."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"override {key}={text}: {key} is a bool; use True or False")
    if isinstance(current, (int, float)):
        try:
            return type(current)(text)
        except ValueError:
            raise ConfigError(f"override {key}={text}: {key} is {type(current).__name__}") from None
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"override {key}={text}: {key} is a {type(current).__name__}; "
                              f"write it as a python literal, e.g. {current!r}") from None
        return type(current)(value)
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Sets each ``key.sub=value`` on the (locked) config, parsed with the existing field's type."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: write key.sub=value, e.g. train.epochs=10")
        key, text = item.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = config
        for depth, part in enumerate(parents):
            if part not in node:
                raise ConfigError(f"override {item!r}: the config has no key "
                                  f"{'.'.join(parents[:depth + 1])!r}; top-level keys: {sorted(node.keys())}")
            node = node[part]
        if not hasattr(node, "keys") or leaf not in node:
            where = ".".join(parents) or "the config"
            known = sorted(node.keys()) if hasattr(node, "keys") else []
            raise ConfigError(f"override {item!r}: {where} has no key {leaf!r}; known: {known}")
        node[leaf] = _parse_value(text, node[leaf], key)
    return config
