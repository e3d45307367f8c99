"""Command-line entry point: train, evaluate or predict with one config.

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle
    python -m rgpkd_jax.main --config configs/demo.py --workdir workdirs/demo --mode train_eval
    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle --mode predict \\
        --input path/to/images
    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/bottle --mode threshold

`--mode threshold` recomputes threshold.json (which training writes) for the newest checkpoint, e.g.
after a damaged newest step was moved aside: predict and export refuse a threshold computed from
other weights.

Any config value can be overridden, e.g. `--config.train.epochs=10`; an unknown key is an error.
Each mode ends by printing its results and the files it wrote. Logs show our own INFO lines and
every library's warnings; `--verbosity=1` shows every library's INFO and DEBUG lines too.
"""

from __future__ import annotations

import glob
import os
import shlex
import sys

from absl import app, flags, logging

from rgpkd_jax import cli, config_files

MODES = ("train", "eval", "train_eval", "predict", "threshold")

_CONFIG = config_files.DEFINE_config_file(
    "config", "Config file, e.g. configs/rd4ad.py:mvtec_ad/bottle.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and images.")
_MODE = flags.DEFINE_enum("mode", "train_eval", MODES, "What to run.")
_INPUT = flags.DEFINE_string("input", None, "predict: an image file or a folder of images.")
_THRESHOLD_CATEGORY = flags.DEFINE_string(
    "threshold_category", None, "predict with a unified model: decide with this category's threshold "
    "instead of the global one.")
# Outside a cluster jax detects (SLURM, Cloud TPU, Open MPI, Kubernetes), --config.distributed
# needs these three (docs/multihost.md).
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "with --config.distributed: host:port of process 0's coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "with --config.distributed: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "with --config.distributed: this process's index.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_s", 100, "with --config.distributed: seconds without a heartbeat after which a "
    "process counts as lost and the others stop (docs/multihost.md).")


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
    if _THRESHOLD_CATEGORY.value and mode != "predict":
        raise app.UsageError("--threshold_category is for --mode=predict (a unified model's category threshold)")
    explicit = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value,
                "process_id": _PROCESS_ID.value}
    if not config.distributed and any(v is not None for v in explicit.values()):
        raise app.UsageError("--coordinator_address, --num_processes and --process_id need "
                             "--config.distributed=True")
    from rgpkd_jax import preflight
    preflight.check_run(config, mode)  # before any data, weights or workdir file
    import jax
    if config.distributed:
        from rgpkd_jax import sharding
        _c_stdout_to_stderr()
        sharding.start_distributed(_HEARTBEAT_TIMEOUT.value, **explicit)
    logging.debug("config:\n%s", config)  # run_info.json holds it too
    primary = jax.process_index() == 0  # only process 0 prints; every process logs

    from rgpkd_jax import files, predict  # imported late so --help stays fast
    # An error before any output (bad data, no checkpoint) leaves no empty workdir behind.
    with files.no_new_empty_folders_on_failure(workdir, os.path.join(workdir, "checkpoints"),
                                               os.path.join(workdir, predict.PREDICTIONS_DIR)):
        result, lines, workdir, outputs = _run_mode_of_all(config, workdir, mode)
    if primary:
        print("\n".join(lines + _written(workdir, outputs, result.get("unwritten", {}))), flush=True)
    if result.get("unwritten"):  # the results are printed above; say once what is missing
        missing = "; ".join(f"{what} ({why})" for what, why in result["unwritten"].items())
        raise OSError(f"could not write {missing}; the results above were computed but not saved there")


def _c_stdout_to_stderr() -> None:
    """Sends what C++ libraries write to the process's stdout (gloo, the CPU collectives of many
    processes, reports each connection there from its own threads, amid our lines) to stderr with
    the logs; Python's ``sys.stdout``, what this program prints, keeps the real stdout."""
    sys.stdout.flush()
    printed = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(printed, "w", buffering=1)


def _run_mode_of_all(config, workdir: str, mode: str):
    """`_run_mode`; with many processes, an error after another process was lost is one line
    naming it, and the process ends at once (its exit would wait for the lost one)."""
    from rgpkd_jax import sharding
    try:
        return _run_mode(config, workdir, mode)
    except sharding.ProcessLostError as error:
        _end_now(error)
    except Exception:
        if not (lost := sharding.processes_lost_after_error()):
            raise
        _end_now(sharding.ProcessLostError(lost))


def _end_now(error: Exception) -> None:
    """Prints ``error`` as the one line and ends the process without waiting for the others."""
    logging.debug("traceback of the error (shown with --verbosity=1)", exc_info=True)
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


def _run_mode(config, workdir: str, mode: str) -> tuple[dict, list[str], str, list[str]]:
    """Runs ``mode``: (its result, the lines to print, the folder of its outputs, their names)."""
    from rgpkd_jax import evaluate, predict, train

    if mode in ("train", "train_eval"):
        result = train.train_and_evaluate(config, workdir, evaluate_after=(mode == "train_eval"))
        lines = [train.format_progress(result, shlex.join([sys.executable, "-m", "rgpkd_jax.main", *sys.argv[1:]]))]
        if "metrics" in result:
            lines.append(evaluate.format_summary(result))
        outputs = [os.path.join("checkpoints", ""), "run_info.json", "metrics.jsonl", evaluate.THRESHOLD_FILE]
        if mode == "train_eval":
            outputs += evaluate.output_files(result)
    elif mode == "eval":
        result = evaluate.evaluate_checkpoint(config, workdir)
        lines, outputs = [evaluate.format_summary(result)], evaluate.output_files(result)
    elif mode == "threshold":
        result = evaluate.threshold_checkpoint(config, workdir)
        lines, outputs = [evaluate.format_threshold(result)], [evaluate.THRESHOLD_FILE]
    else:
        result = predict.predict_path(config, workdir, _INPUT.value, threshold_category=_THRESHOLD_CATEGORY.value)
        lines = [predict.format_summary(result)]
        workdir, outputs = result["output_dir"], predict.OUTPUT_FILES + [predict.HEATMAP_PATTERN]
    return result, lines, workdir, outputs


def _written(directory: str, names: list[str], unwritten: dict[str, str]) -> list[str]:
    """The lines naming the run's output files that exist (and were not left unwritten); a glob
    pattern among ``names`` is one line with its count of files."""
    lines = []
    for path in (os.path.join(directory, name) for name in names):
        if "*" in path:
            if found := glob.glob(path):
                lines.append(f"  {path} ({len(found)} file(s))")
        elif os.path.exists(path) and path not in unwritten:
            lines.append(f"  {path}")
    return ["wrote:"] + lines if lines else []


if __name__ == "__main__":
    cli.run(main)
