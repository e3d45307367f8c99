"""Running into a workdir: one run at a time (lock), unwritable folders found before the work,
results kept when the last write fails, and what a command line prints and logs."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from rgpkd_jax import evaluate, model_setup, train, workdir_lock
from tests.helpers import make_unwritable, one_error_line, run_module, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_second_run_into_a_held_workdir_is_refused_naming_the_holder(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    workdir = str(tmp_path)
    held = workdir_lock.acquire(workdir, "train")  # the first run, still going
    with pytest.raises(workdir_lock.WorkdirBusyError, match=rf"{re.escape(workdir)} is in use by pid {os.getpid()}"):
        train.train_and_evaluate(config, workdir, evaluate_after=False)
    with pytest.raises(workdir_lock.WorkdirBusyError, match=f"pid {os.getpid()}"):
        evaluate.evaluate_checkpoint(config, workdir)
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))  # refused before any work
    workdir_lock.release(workdir, held)
    assert not os.listdir(workdir)


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    # A run killed by SIGKILL cannot remove its lock.
    script = "import sys; from rgpkd_jax import workdir_lock; workdir_lock.acquire(sys.argv[1], 'train'); " \
             "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert killed.returncode == -signal.SIGKILL
    with open(tmp_path / workdir_lock.LOCK_FILE) as f:
        dead_pid = json.load(f)["pid"]

    with caplog.at_level(logging.WARNING):
        record = workdir_lock.acquire(str(tmp_path), "train")
    assert record["pid"] == os.getpid()
    assert f"process {dead_pid}" in caplog.text and "no longer running" in caplog.text
    workdir_lock.release(str(tmp_path), record)


def test_a_recycled_pid_does_not_keep_a_dead_runs_lock(tmp_path):
    # A restarted container's process can get the dead run's pid (here: ours) with another start time.
    stale = {"pid": os.getpid(), "pid_start": 1, "host": workdir_lock.socket.gethostname(),
             "mode": "train", "started": "2020-01-01T00:00:00+00:00"}
    (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(stale))
    record = workdir_lock.acquire(str(tmp_path), "eval")
    assert record["mode"] == "eval"
    workdir_lock.release(str(tmp_path), record)


def test_two_runs_taking_over_one_stale_lock_do_not_both_proceed(tmp_path, monkeypatch):
    """Both runs judge the same lock stale; the second is held back right after that judgement
    until the first has taken the lock over: it must then find the first's lock, not remove it."""
    stale = {"pid": os.getpid(), "pid_start": 1, "host": workdir_lock.socket.gethostname(),
             "mode": "train", "started": "2020-01-01T00:00:00+00:00"}  # a recycled pid: dead
    (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps(stale))
    judged, first_done = threading.Event(), threading.Event()
    is_running = workdir_lock._is_running

    def judge_then_wait(holder):
        running = is_running(holder)
        if threading.current_thread().name == "second" and not judged.is_set():
            judged.set()
            first_done.wait(timeout=60)
        return running

    monkeypatch.setattr(workdir_lock, "_is_running", judge_then_wait)
    outcomes = {}

    def run(name):
        try:
            outcomes[name] = workdir_lock.acquire(str(tmp_path), name)
        except workdir_lock.WorkdirBusyError as e:
            outcomes[name] = e

    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    assert judged.wait(timeout=60)
    run("first")
    first_done.set()
    second.join(timeout=60)
    assert isinstance(outcomes["first"], dict), outcomes
    assert isinstance(outcomes["second"], workdir_lock.WorkdirBusyError), outcomes
    assert f"in use by pid {os.getpid()}" in str(outcomes["second"])
    assert sorted(os.listdir(tmp_path)) == [workdir_lock.LOCK_FILE]  # no takeover file left
    workdir_lock.release(str(tmp_path), outcomes["first"])


def test_an_unwritable_workdir_is_reported_before_the_model_is_loaded(tmp_path, synthetic_data_dir, monkeypatch):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    workdir = str(tmp_path / "readonly")

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the workdir was checked")

    monkeypatch.setattr(model_setup, "load_trained_model", must_not_load)
    make_unwritable(workdir, monkeypatch)
    with pytest.raises(OSError, match=rf"cannot write to the workdir {re.escape(workdir)} \(Permission denied\)"):
        evaluate.evaluate_checkpoint(config, workdir)


def test_an_eval_without_a_checkpoint_leaves_no_workdir_behind(tmp_path, synthetic_data_dir):
    workdir = tmp_path / "never_trained"
    run = run_module("rgpkd_jax.main", "--config", os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny"),
                     f"--config.dataset.data_dir={synthetic_data_dir}", "--config.teacher.weights=random",
                     "--workdir", workdir, "--mode", "eval")
    assert one_error_line(run).startswith(f"error: no checkpoint in {workdir}/checkpoints; train first")
    assert not workdir.exists()


# --- the command line, run as the user runs it (one tiny training, then an evaluation) ---

def _main(args, *, workdir, data_dir, prelude=""):
    """`python -m rgpkd_jax.main` on the tiny synthetic RD4AD config (``prelude`` patches first)."""
    script = prelude + textwrap.dedent("""
        import sys
        from rgpkd_jax import cli, main
        cli.run(main.main)
    """)
    argv = ["--config", os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny"),
            f"--config.dataset.data_dir={data_dir}", "--config.teacher.weights=random",
            "--config.train.epochs=1", "--config.eval.num_visualise=0", f"--workdir={workdir}", *args]
    return subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": REPO})


@pytest.fixture(scope="module")
def trained(module_tmp_path, synthetic_data_dir):
    workdir = str(module_tmp_path / "cli_workdir")
    return workdir, _main(["--mode=train"], workdir=workdir, data_dir=synthetic_data_dir)


def test_train_ends_with_a_message_and_the_paths_it_wrote_and_few_log_lines(trained):
    workdir, run = trained
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert "training finished: step 7 of 7" in lines
    for name in ("checkpoints", "run_info.json", "metrics.jsonl", evaluate.THRESHOLD_FILE):
        assert f"  {os.path.join(workdir, name)}" in [line.rstrip(os.sep) for line in lines], name
    log = [line for line in run.stderr.splitlines() if re.match(r"[IWEF]\d{4} ", line)]
    # Our lines only: the random-teacher warning, one line per logged step (7) and, when this test
    # runs first in its session, the one saying the dataset is being prepared; no library INFO.
    ours = ("metric_writer.py", "preparing synthetic/grid in")
    assert not [line for line in log if line.startswith("I") and not any(o in line for o in ours)], log
    assert len(log) <= 11, log
    assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))


def test_a_failed_last_write_keeps_the_printed_results_and_names_the_file(trained, synthetic_data_dir):
    workdir, run = trained
    assert run.returncode == 0, run.stderr[-3000:]
    full_disk = textwrap.dedent("""
        import errno, os
        from rgpkd_jax import files
        write_json = files.write_json
        def write_json_on_a_full_disk(path, obj):
            if os.path.basename(path) == "eval_metrics.json":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            write_json(path, obj)
        files.write_json = write_json_on_a_full_disk
    """)
    run = _main(["--mode=eval"], workdir=workdir, data_dir=synthetic_data_dir, prelude=full_disk)
    assert run.returncode == 1
    out = run.stdout.splitlines()
    warning = next(i for i, line in enumerate(out) if "RANDOM TEACHER" in line and "scores below" in line)
    auroc = next(i for i, line in enumerate(out) if line.startswith("  image AUROC"))
    assert warning < auroc  # the warning speaks of the scores below it
    metrics_path = os.path.join(workdir, evaluate.METRICS_FILE)
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: could not write {metrics_path} (No space left on device); the results above were "
        "computed but not saved there")
    assert not os.path.exists(metrics_path)


def test_a_run_that_prepares_its_dataset_says_so_in_one_line_without_progress_bars(tmp_path):
    """The first run on a dataset prepares it: one INFO line says where, tfds's bars stay hidden
    (they are for the prepare command; --verbosity=1 shows them)."""
    run = _main(["--mode=train", "--config.train.max_steps_this_run=1"], workdir=str(tmp_path / "workdir"),
                data_dir=str(tmp_path / "data"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [line for line in run.stderr.splitlines() if "preparing synthetic/grid in" in line]
    assert "Generating" not in run.stderr and "Shuffling" not in run.stderr, run.stderr[-3000:]
