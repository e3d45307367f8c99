"""Two jax processes on this machine against one: training, evaluation, files and resume.

Each run is the command line (`python -m rgpkd_jax.main`), as docs/multihost.md gives it: two
processes with two CPU devices each (`--config.distributed=True`, a coordinator on 127.0.0.1,
gloo collectives), or one process with four CPU devices, so that every layout has four devices and
the same per-device batch. The command runs under an audit hook that records the files each
process opens for writing in the workdir (orbax's array data, written by tensorstore, is not seen;
checkpoints are written by all processes together by design and are left out of that check).

Runs, all RD4AD tiny on the synthetic dataset with a global batch of 16 (3 steps per epoch):
  two:      2 processes, stopped after 2 steps (train.max_steps_this_run)
  two -> 1: the same workdir resumed by 1 process to the end, then evaluated
  one:      1 process, uninterrupted, evaluated
  1 -> two: a copy of the finished `two -> 1` workdir evaluated again by 2 processes, then
            used by 2 processes to score two images (--mode=predict, into predictions/<UTC time>/)

Further runs stop on purpose (SIGTERM, a killed process, a refused workdir lock) and resume; the
uninterrupted `one` above is what their losses are compared with.

Float64 (`JAX_ENABLE_X64=1`, `compute_dtype=float64`, plain SGD as in tests/train_test.py) keeps
the two layouts' different summation orders at float64 rounding, so losses and parameters are
compared with train_test's RTOL_FLOAT64; evaluation has no sums across devices and the same
images per device in both layouts, so its metrics and threshold must be equal.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from rgpkd_jax import checkpointing, evaluate, metric_writer, visualize, workdir_lock
from rgpkd_jax.data import pipeline, synthetic
from tests.helpers import tiny_config
from tests.train_test import RTOL_FLOAT64

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 600  # per launch; a run that hangs (a process waiting on a dead peer) is killed

# The command line under an audit hook: every path under $AUDIT_DIR opened for writing or renamed
# to is recorded, and written to $AUDIT_OUT as JSON when the process exits.
_AUDITED_MAIN = textwrap.dedent("""
    import atexit, json, os, runpy, sys
    watched, out, seen, busy = os.path.realpath(os.environ["AUDIT_DIR"]), os.environ["AUDIT_OUT"], set(), []
    def audit(event, args):
        if busy or event not in ("open", "os.rename"):
            return
        busy.append(1)
        try:
            if event == "open":
                path, mode, flags = args
                writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            else:
                path, writing = args[1], True
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                path = os.path.realpath(os.fsdecode(path))
                if path.startswith(watched + os.sep):
                    seen.add(os.path.relpath(path, watched))
        finally:
            busy.pop()
    def dump():
        with open(out, "w") as f:
            json.dump(sorted(seen), f)
    atexit.register(dump)
    sys.addaudithook(audit)
    if os.environ.get("PAUSE_AFTER_STEP"):  # the stop tests: wait after that step's save for a signal
        import time
        from rgpkd_jax import train_loop
        pause_after, agree = int(os.environ["PAUSE_AFTER_STEP"]), train_loop.PreemptionStop.after_step
        def paused(self, step, state, metrics):
            if step == pause_after:
                open(os.environ["PAUSE_READY"], "w").close()
                while not self.received():
                    time.sleep(0.05)
            agree(self, step, state, metrics)
        train_loop.PreemptionStop.after_step = paused
    runpy.run_module("rgpkd_jax.main", run_name="__main__", alter_sys=True)
""")

CATEGORY = synthetic.CATEGORIES[0]
STEPS = 3  # 60 training images // batch 16
OUTPUTS = ("metrics.jsonl", "run_info.json", evaluate.METRICS_FILE, evaluate.THRESHOLD_FILE,
           visualize.SHEET_FILE, visualize.CURVES_FILE)


def config_flags(data_dir: str) -> list[str]:
    """tests.helpers.tiny_config's run as command-line overrides, with plain SGD in float64."""
    return [f"--config=configs/rd4ad.py:synthetic/{CATEGORY},tiny",
            f"--config.dataset.data_dir={data_dir}", "--config.teacher.weights=random",
            "--config.seed=0", "--config.train.epochs=1", "--config.train.batch_size=16",
            "--config.train.log_every_steps=1", "--config.eval.num_visualise=2",
            # Plain SGD: Adam's first steps are sign-like on near-zero gradients and would turn
            # any rounding difference into a difference of 2 lr (tests/train_test.py).
            "--config.train.optimizer=sgd", "--config.train.learning_rate=0.01",
            "--config.train.schedule=constant", "--config.model.compute_dtype=float64"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workdir: str, data_dir: str, *, processes: int, extra: tuple[str, ...] = (),
           mode: str = "train_eval") -> list[dict]:
    """Runs the command line in `processes` processes (4 CPU devices in all); returns per process
    its stdout, stderr and the workdir files it wrote (relative paths)."""
    return finish(*start(workdir, data_dir, processes=processes, extra=extra, mode=mode))


def start(workdir: str, data_dir: str, *, processes: int, extra: tuple[str, ...] = (),
          mode: str = "train_eval", pause_after: dict[int, int] | None = None) -> tuple[list, str]:
    """`launch`'s processes started: (the processes, the folder of their logs). Process i of
    ``pause_after`` waits after step ``pause_after[i]``'s save until it receives SIGTERM (or is
    killed), having created ``<logs>/ready<i>``."""
    os.makedirs(workdir, exist_ok=True)
    logs = os.path.join(os.path.dirname(workdir), os.path.basename(workdir) + f".logs.{time.time_ns()}")
    os.makedirs(logs)
    port = _free_port()
    procs = []
    for i in range(processes):
        env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={4 // processes}",
               "AUDIT_DIR": workdir, "AUDIT_OUT": os.path.join(logs, f"writes{i}.json")}
        if pause_after and i in pause_after:
            env.update(PAUSE_AFTER_STEP=str(pause_after[i]), PAUSE_READY=os.path.join(logs, f"ready{i}"))
        args = [*config_flags(data_dir), f"--workdir={workdir}", f"--mode={mode}", *extra]
        if processes > 1:
            env.update(JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                       JAX_COORDINATOR_BIND_ADDRESS=f"127.0.0.1:{port}")
            args += ["--config.distributed=True", f"--coordinator_address=127.0.0.1:{port}",
                     f"--num_processes={processes}", f"--process_id={i}"]
        with open(os.path.join(logs, f"out{i}"), "w") as out, open(os.path.join(logs, f"err{i}"), "w") as err:
            procs.append(subprocess.Popen([sys.executable, "-c", _AUDITED_MAIN, *args], cwd=REPO,
                                          env=env, stdout=out, stderr=err))
    return procs, logs


def finish(procs: list, logs: str, *, exit_codes: tuple[int, ...] | None = None) -> list[dict]:
    """Waits for `start`'s processes (killed after TIMEOUT_S) and checks their exit codes (all 0
    unless ``exit_codes``); returns `launch`'s results (no writes from a killed process)."""
    deadline = time.monotonic() + TIMEOUT_S
    try:
        codes = [p.wait(timeout=max(deadline - time.monotonic(), 1)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for i, code in enumerate(codes):
        def read(name):
            with open(os.path.join(logs, name)) as f:
                return f.read()
        expected = 0 if exit_codes is None else exit_codes[i]
        assert code == expected, f"process {i} of {len(procs)} exited with {code}:\n{read(f'err{i}')[-6000:]}"
        written = os.path.exists(os.path.join(logs, f"writes{i}.json"))
        results.append({"stdout": read(f"out{i}"), "stderr": read(f"err{i}"),
                        "writes": set(json.loads(read(f"writes{i}.json"))) if written else set()})
    return results


def _losses(workdir: str) -> list[float]:
    return [r["loss"] for r in metric_writer.read_metrics(workdir)]


def _read_json(workdir: str, name: str) -> dict:
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)


def _saved_state(workdir: str) -> tuple[int, dict]:
    """(step, {path: numpy array}) of the workdir's last checkpoint, read as saved: as numpy, so
    that float64 stays float64 in this process, which runs without jax_enable_x64."""
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_handlers={
        "state": ocp.StandardCheckpointHandler(), checkpointing.DATA_ITEM: ocp.JsonCheckpointHandler()})
    step = manager.latest_step()
    metadata = manager.item_metadata(step)["state"]
    manager.close()
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                            ocp.checkpoint_utils.construct_restore_args(metadata),
                            is_leaf=lambda x: isinstance(x, ocp.RestoreArgs))
    tree = ocp.PyTreeCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"),
                                            args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    return step, _flatten(tree)


def _flatten(tree, prefix=()) -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, prefix + (key,)).items()}
    return {"/".join(map(str, prefix)): np.asarray(tree)}


def _outside_checkpoints(writes: set[str]) -> set[str]:
    return {w for w in writes if not w.startswith("checkpoints" + os.sep)}


@pytest.fixture(scope="module")
def runs(module_tmp_path, synthetic_data_dir):
    """The runs of the module docstring; the data is prepared before any process starts."""
    pipeline.num_examples(tiny_config("rd4ad", data_dir=synthetic_data_dir, category=CATEGORY), "train")
    root = module_tmp_path
    two, one, again = str(root / "two"), str(root / "one"), str(root / "again")
    result = {"two": launch(two, synthetic_data_dir, processes=2,
                            extra=("--config.train.max_steps_this_run=2",))}
    result["two_losses"] = _losses(two)
    result["two_to_one"] = launch(two, synthetic_data_dir, processes=1)
    result["one"] = launch(one, synthetic_data_dir, processes=1)
    shutil.copytree(two, again, ignore=shutil.ignore_patterns(*OUTPUTS[2:]))
    result["again"] = launch(again, synthetic_data_dir, processes=2)
    images = root / "new_images"
    images.mkdir()
    batch = next(iter(pipeline.test_batches(tiny_config("rd4ad", data_dir=synthetic_data_dir,
                                                        category=CATEGORY), batch_size=2)))
    for i, image in enumerate(evaluate.to_uint8(batch["image"])):
        Image.fromarray(image).save(images / f"{i}.png")
    result["predict"] = launch(again, synthetic_data_dir, processes=2, mode="predict",
                               extra=(f"--input={images}",))
    result.update(dirs={"two": two, "one": one, "again": again})
    return result


def test_two_processes_train_like_one(runs):
    one = _losses(runs["dirs"]["one"])
    assert len(one) == STEPS and len(runs["two_losses"]) == 2
    assert abs(one[-1] - one[0]) > 1e-4 * abs(one[0]), "no training happened"
    np.testing.assert_allclose(runs["two_losses"], one[:2], rtol=RTOL_FLOAT64)
    records = metric_writer.read_metrics(runs["dirs"]["one"])
    assert all(r["images_per_sec"] > 0 and r["data_wait_s"] >= 0 and r["checkpoint_save_s"] >= 0
               for r in records)
    assert records[0]["data_wait_s"] > 0  # the first batch is read before any step runs


def test_a_two_process_checkpoint_resumes_in_one_process(runs):
    dirs = runs["dirs"]
    resumed, straight = _losses(dirs["two"]), _losses(dirs["one"])
    assert [r["step"] for r in metric_writer.read_metrics(dirs["two"])] == list(range(1, STEPS + 1))
    np.testing.assert_allclose(resumed, straight, rtol=RTOL_FLOAT64)
    (step_a, a), (step_b, b) = _saved_state(dirs["two"]), _saved_state(dirs["one"])
    assert step_a == step_b == STEPS
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=RTOL_FLOAT64, atol=1e-12, err_msg=key)


def test_two_processes_evaluate_like_one(runs):
    """The same checkpoint evaluated by 1 process (`two -> 1`) and by 2 (`1 -> two`): the maps are
    gathered before the metrics, and each device computes the same images in both layouts."""
    dirs = runs["dirs"]
    for name in (evaluate.METRICS_FILE, evaluate.THRESHOLD_FILE):
        assert _read_json(dirs["again"], name) == _read_json(dirs["two"], name), name
    metrics = _read_json(dirs["again"], evaluate.METRICS_FILE)["metrics"]
    assert 0.0 <= metrics["image_auroc"] <= 1.0


def test_only_process_zero_writes_and_prints(runs):
    first, second = runs["two"]
    assert _outside_checkpoints(second["writes"]) == set(), second["writes"]
    assert {"metrics.jsonl", "run_info.json"} <= first["writes"]
    assert second["stdout"] == ""
    assert f"training stopped at step 2 of {STEPS}" in first["stdout"]  # train.max_steps_this_run
    first, second = runs["again"]
    assert _outside_checkpoints(second["writes"]) == set(), second["writes"]
    assert set(OUTPUTS[1:]) <= first["writes"], first["writes"]
    assert second["stdout"] == ""
    assert "image AUROC" in first["stdout"]
    dirs = runs["dirs"]  # the same results and files, in another workdir
    assert first["stdout"].replace(dirs["again"], dirs["two"]) == runs["two_to_one"][0]["stdout"]


def test_two_processes_predict_once(runs):
    first, second = runs["predict"]
    assert second["writes"] == set() and second["stdout"] == ""
    # Files only: the write check opens the folder itself (O_TMPFILE) and leaves nothing there.
    written = {w for w in first["writes"] if not os.path.basename(w).startswith(".")
               and os.path.isfile(os.path.join(runs["dirs"]["again"], w))}
    run_dirs = {os.path.dirname(w) for w in written}  # each predict run writes a new folder
    assert len(run_dirs) == 1 and os.path.dirname(run_dirs.pop()) == "predictions", written
    assert {os.path.basename(w) for w in written} == {
        "predictions.json", "predictions.csv", "0_heatmap.png", "1_heatmap.png"}, first["writes"]
    assert "scored 2 image(s), 0 unreadable" in first["stdout"]


def _wait_until_paused(procs: list, logs: str, indices: tuple[int, ...]) -> None:
    """Waits until `start`'s processes ``indices`` pause (their ready files exist)."""
    deadline = time.monotonic() + TIMEOUT_S
    while not all(os.path.exists(os.path.join(logs, f"ready{i}")) for i in indices):
        ended = [i for i, p in enumerate(procs) if p.poll() is not None]
        assert not ended and time.monotonic() < deadline, f"process(es) {ended} ended before pausing"
        time.sleep(0.1)


def test_a_preempted_run_resumes_and_a_lost_process_stops_the_other(runs, tmp_path, synthetic_data_dir):
    """Three runs into one workdir, each resuming the one before:
    1. 2 processes, SIGTERM to both after step 1 (as SLURM and preemptible machines send it):
       both save step 1 and exit 0, and process 0 prints the command that resumes;
    2. that command again, on both processes; process 1 is killed (SIGKILL) after step 2's save
       started: process 0 stops within the heartbeat timeout with one line naming process 1 and
       exit code 1, instead of waiting for it;
    3. 1 process, from the last complete checkpoint to the end.
    The losses are those of the uninterrupted run."""
    workdir = str(tmp_path / "stopped")
    extra = ("--config.train.checkpoint_every_steps=1", "--heartbeat_timeout_s=15")
    procs, logs = start(workdir, synthetic_data_dir, processes=2, mode="train", extra=extra,
                        pause_after={0: 1, 1: 1})
    _wait_until_paused(procs, logs, (0, 1))
    for p in procs:
        p.send_signal(signal.SIGTERM)
    first, second = finish(procs, logs)
    assert checkpointing.newest_step(workdir) == 1
    prefix = f"preempted (SIGTERM) at step 1 of {STEPS}: checkpoint saved; resume with: "
    line = first["stdout"].splitlines()[0]
    assert line.startswith(prefix), first["stdout"]
    command = shlex.split(line[len(prefix):])
    assert command[:3] == [sys.executable, "-m", "rgpkd_jax.main"] and "--process_id=0" in command
    assert command[3:][:len(config_flags(synthetic_data_dir)) + 2 + len(extra)] == [
        *config_flags(synthetic_data_dir), f"--workdir={workdir}", "--mode=train", *extra]
    assert second["stdout"] == ""

    procs, logs = start(workdir, synthetic_data_dir, processes=2, mode="train", extra=extra, pause_after={1: 2})
    _wait_until_paused(procs, logs, (1,))
    procs[1].kill()
    killed = time.monotonic()
    first, _ = finish(procs, logs, exit_codes=(1, -signal.SIGKILL))
    # The heartbeat timeout (15 s) and the time to exit, with room for a loaded machine.
    assert time.monotonic() - killed < 120
    errors = [line for line in first["stderr"].splitlines() if line.startswith("error:")]
    assert errors == ["error: lost process 1 of 2 (it ended or stopped responding), so process 0 stops "
                      "too; rerun the same command on every process to resume from the last checkpoint"], \
        first["stderr"][-3000:]
    assert first["stderr"].rstrip().endswith(errors[0]), first["stderr"][-3000:]
    assert checkpointing.newest_step(workdir) in (1, 2)  # step 2's save may not have completed

    launch(workdir, synthetic_data_dir, processes=1, mode="train")
    np.testing.assert_allclose(_losses(workdir), _losses(runs["dirs"]["one"]), rtol=RTOL_FLOAT64)


def test_a_refused_lock_stops_every_process_with_its_error(tmp_path, synthetic_data_dir):
    """A live run holds the workdir (here: this test): process 0 is refused its lock, and process 1
    stops at once with the same error instead of waiting for process 0 in its first collective."""
    workdir = str(tmp_path / "held")
    os.makedirs(workdir)
    held = workdir_lock.acquire(workdir, "train")
    try:
        results = finish(*start(workdir, synthetic_data_dir, processes=2, mode="train"), exit_codes=(1, 1))
    finally:
        workdir_lock.release(workdir, held)
    first, second = ([line for line in r["stderr"].splitlines() if line.startswith("error:")] for r in results)
    assert len(first) == 1 and f"{workdir} is in use by pid {os.getpid()}" in first[0], results[0]["stderr"][-3000:]
    assert second == first, results[1]["stderr"][-3000:]
