"""What every command line of the package shares: one-line flag errors, quiet library INFO lines,
the persistent compilation cache, and errors of ours printed as one line instead of a traceback.

Library modules never print; a CLI's ``main`` prints its results and :func:`run` starts it.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Callable, Sequence

from absl import app, flags, logging

from rgpkd_jax import cache_dir
from rgpkd_jax.config_files import ConfigError

# Our errors say what is wrong and how to fix it; a traceback would bury that.
USER_ERRORS = (OSError, ValueError, RuntimeError)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _QuietLibraries(std_logging.Filter):
    """By default our own INFO lines and everyone's warnings show, other libraries' INFO lines do
    not: orbax alone logs a dozen per save, jax and tfds more, and they buried our messages.
    ``--verbosity=1`` (``-v 1``) shows them all, with DEBUG lines."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return (record.levelno >= std_logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)
                or logging.get_verbosity() >= logging.DEBUG)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with a one-line error for overrides of keys the config doesn't have."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # ml_collections reports unknown keys this way
        detail = str(e.args[0] if e.args else e).replace("\\n", " ").replace("\n", " ")
        detail = " ".join(detail.replace("\\", "").replace("'", "").split())
        sys.exit(f"error: unknown config key in an override: {detail}. "
                 "Run with --helpfull or print the config file's get_config() to see the keys.")
    except flags.Error as e:
        if isinstance(e.__context__, ConfigError):  # a config file's own one-line error
            sys.exit(f"error: {e.__context__}")
        sys.exit(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.")


def enable_compilation_cache() -> None:
    """Keeps compiled XLA programs between runs (model init alone is ~30 s of small compiles on
    CPU the first time, ~3 s after). $JAX_COMPILATION_CACHE_DIR, if set, wins."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


# When an orbax restore fails (a damaged checkpoint, reported in one line), the other reads of the
# checkpoint still in flight end after it: tensorstore callbacks into orbax's closed event loop
# (an unraisable "Event loop is closed" each) and failed read tasks nobody awaits any more (asyncio
# logs "Task exception was never retrieved" each). Dozens of tracebacks buried the one line; they
# are dropped (shown with --verbosity=1 as DEBUG lines), other such reports go on.


def _drop_closed_loop_callbacks(unraisable) -> None:
    """``sys.unraisablehook`` dropping the late tensorstore callbacks of a failed restore."""
    if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
        logging.debug("dropped a late asyncio callback: %s", unraisable.exc_value)
        return
    sys.__unraisablehook__(unraisable)


class _AbandonedCheckpointReads(std_logging.Filter):
    """Drops asyncio's reports of orbax read tasks left behind by a failed restore."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Task exception was never retrieved") and "orbax" in message:
            logging.debug("dropped an abandoned checkpoint read: %s", message.splitlines()[0])
            return False
        return True


def run(main: Callable[[Sequence[str]], None], *, compilation_cache: bool = True) -> None:
    """Runs ``main`` under absl; an error of ours ends the program with its message on one line."""

    def guarded(argv):
        sys.unraisablehook = _drop_closed_loop_callbacks
        std_logging.getLogger("asyncio").addFilter(_AbandonedCheckpointReads())
        logging.get_absl_handler().addFilter(_QuietLibraries())
        try:
            main(argv)
        except USER_ERRORS as e:
            logging.debug("traceback of the error (shown with --verbosity=1)", exc_info=True)
            sys.exit(f"error: {e}")

    if compilation_cache:
        enable_compilation_cache()
    app.run(guarded, flags_parser=parse_flags)
