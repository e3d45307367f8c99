"""The one way to load a config outside `--config` flags: ``configs/<file>.py[:arg]`` plus overrides.

``load_config("configs/rd4ad.py:mvtec_ad/bottle", ["train.epochs=10"])`` does what
``--config configs/rd4ad.py:mvtec_ad/bottle --config.train.epochs=10`` does on the command line:
the file's ``get_config(arg)``, then each ``key.sub=value`` parsed as the type of the value it
replaces. Paths are relative to the working directory. A mistyped key is an error naming the keys
that exist.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import uuid
from typing import Sequence

import ml_collections


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which and how to fix it."""


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """``path.py[:arg]`` -> ``get_config(arg)`` with ``overrides`` applied."""
    path, _, arg = spec.partition(":")
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} not found (paths are relative to the working directory "
                          f"{os.getcwd()}); e.g. configs/rd4ad.py:mvtec_ad/bottle")
    module_spec = importlib.util.spec_from_file_location(f"_rgpkd_config_{uuid.uuid4().hex}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no get_config(arg)")
    config = module.get_config(arg or None)
    return apply_overrides(config, overrides)


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
