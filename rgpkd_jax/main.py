"""Command-line entry point: train, evaluate or predict with one config.

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle
    python -m rgpkd_jax.main --config configs/demo.py --workdir workdirs/demo --mode train_eval
    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle --mode predict \\
        --input path/to/images

Any config value can be overridden, e.g. `--config.train.epochs=10`; an unknown key is an error.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

MODES = ("train", "eval", "train_eval", "predict")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/rd4ad.py:mvtec_ad/bottle.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and images.")
_MODE = flags.DEFINE_enum("mode", "train_eval", MODES, "What to run.")
_INPUT = flags.DEFINE_string("input", None, "predict: an image file or a folder of images.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    config, workdir, mode = _CONFIG.value, _WORKDIR.value, _MODE.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/rd4ad.py:mvtec_ad/bottle")
    if not workdir:
        raise app.UsageError("--workdir is required: where checkpoints and metrics are written")
    if mode == "predict" and not _INPUT.value:
        raise app.UsageError("--mode=predict needs --input (an image file or a folder of images)")
    if config.distributed:
        import jax
        jax.distributed.initialize()
    logging.info("config:\n%s", config)

    from rgpkd_jax import evaluate, predict, train  # imported late so --help stays fast
    if mode in ("train", "train_eval"):
        train.train_and_evaluate(config, workdir, evaluate_after=(mode == "train_eval"))
    elif mode == "eval":
        evaluate.evaluate_checkpoint(config, workdir)
    else:
        predict.predict_path(config, workdir, _INPUT.value)


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
        sys.exit(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.")


def enable_compilation_cache() -> None:
    """Keeps compiled XLA programs between runs (model init alone is ~30 s of small compiles on
    CPU the first time, ~3 s after). $JAX_COMPILATION_CACHE_DIR, if set, wins."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    from rgpkd_jax import cache_dir
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def run():
    enable_compilation_cache()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
