"""The flags that mean the same thing in every benchmark tool, defined and checked here once.

Each tool calls these from its own `define_flags()` (only when run as a program, so importing a
tool defines no flags). The names follow `rgpkd_jax.main` (`--config`, `--workdir`) and one rule:
a flag that lists things is plural and takes a comma list (`--methods=rd4ad,rgpkd`), except
`--overrides`, which is repeated (an override's value may hold commas). benchmarks/README.md has
the table.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from rgpkd_jax.data import unified
from rgpkd_jax.models import list_methods


def define_methods(what: str) -> None:
    flags.DEFINE_list("methods", list(list_methods()), f"Registered methods (rgpkd_jax.models.list_methods; "
                      f"configs/<name>.py in --config_dir) {what}.")


def define_seeds(default: Sequence[int], what: str) -> None:
    flags.DEFINE_list("seeds", [str(s) for s in default], f"Seeds, a comma list of whole numbers: {what}.")


def define_settings(unified_means: str) -> None:
    flags.DEFINE_list("settings", list(unified.SETTINGS), f"Settings (docs/unified.md): {unified.PER_CATEGORY}, one "
                      f"model per category; {unified.UNIFIED}, {unified_means}.")


def check_settings(settings: Sequence[str]) -> None:
    check_choices("settings", settings, unified.SETTINGS)


def define_overrides() -> None:
    flags.DEFINE_multi_string("overrides", [], "key.sub=value for every config this tool builds (repeat the flag), "
                              "as --config.key.sub=value is for rgpkd_jax.main, e.g. --overrides=train.epochs=10.")


def define_config_dir() -> None:
    flags.DEFINE_string("config_dir", "configs", "Folder of the <method>.py config files (relative to the "
                        "working directory).")


def define_output_dir(default: str | None, what: str) -> None:
    flags.DEFINE_string("output_dir", default, f"Folder (created) where {what} go (relative to the working "
                        "directory).")


def check_arguments(argv: Sequence[str]) -> None:
    """Every input is a flag: a stray word is a mistake (a missing `--`, an unquoted space)."""
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}; every input is a --flag")


def whole_numbers(values: Sequence[str], flag: str) -> list[int]:
    """A list flag's values as ints; a one-line error naming the flag otherwise."""
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--{flag}={','.join(values)}: give whole numbers, e.g. --{flag}=0,1,2") from None


def check_choices(flag: str, given: Sequence, known: Sequence) -> None:
    """A one-line error naming the flag when `given` holds values outside `known` (or nothing)."""
    unknown = [g for g in given if g not in known]
    if unknown or not given:
        raise ValueError(f"--{flag}: unknown {unknown}; choose from {list(known)}" if unknown else
                         f"--{flag} is empty; choose from {list(known)}")


def check_methods(methods: Sequence[str]) -> None:
    check_choices("methods", methods, list_methods())
