"""Command-line entry point: train, evaluate or predict with one config.

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle
    python -m rgpkd_jax.main --config configs/demo.py --workdir workdirs/demo --mode train_eval
    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle --mode predict \\
        --input path/to/images

Any config value can be overridden, e.g. `--config.train.epochs=10`; an unknown key is an error.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from rgpkd_jax import cli

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
        result = train.train_and_evaluate(config, workdir, evaluate_after=(mode == "train_eval"))
        if mode == "train_eval" and "metrics" in result:
            print(evaluate.format_summary(result), flush=True)
    elif mode == "eval":
        print(evaluate.format_summary(evaluate.evaluate_checkpoint(config, workdir)), flush=True)
    else:
        print(predict.format_summary(predict.predict_path(config, workdir, _INPUT.value)), flush=True)


if __name__ == "__main__":
    cli.run(main)
