"""The speed benchmark's memory rows: peak memory of one task, in a fresh process each.

    python -m benchmarks.speed_memory --probe=train:ours [--tiny]      # prints one JSON line
    python -m benchmarks.speed_memory --probe=infer:official --official_dir=PATH [--tiny]

`benchmarks.speed` starts this once per (task, implementation), interleaved ours, peers, ours, peers,
so each peak is that task's alone. On the CPU it is the peak resident memory beyond the process's
RSS once its libraries are imported; on an accelerator, the device's own count of the task's
peak allocation (jax `memory_stats()["peak_bytes_in_use"]`, torch `max_memory_allocated`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import NamedTuple

from absl import app, flags

from benchmarks import harness, inputs, memory, speed_setup, timing
from benchmarks.speed_report import Row

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("train", "infer")


class Variant(NamedTuple):
    """One of our train-step variants that the memory rows probe beside the plain step."""
    row_suffix: str
    overrides: tuple[str, ...]  # config overrides
    teacher_cache: bool         # the step reads the teacher's features from a device cache
    setting: str                # what differs, for the row's note


OUR_TRAIN_VARIANTS = {
    "ours_remat": Variant("_remat", ("model.remat=decoder",), False, "model.remat=decoder"),
    "ours_teacher_cache": Variant("_teacher_cache", (), True, "train.teacher_cache=device"),
}
PLAIN = Variant("", (), False, "")


def probe(task: str, impl: str, setup: speed_setup.Setup, *, peer: speed_setup.Peer | None = None,
          config_dir: str = "configs") -> dict:
    """Peak memory of one task (two calls: the first compiles) in this process: ours (`impl` 'ours')
    or `peer`'s (`impl` its name)."""
    if peer:
        peer.import_all()
    else:
        from rgpkd_jax import evaluate, train  # noqa: F401  (imports count in the baseline)
    after_imports = memory.rss_mib()
    batch = setup.train_batch if task == "train" else max(setup.infer_batches)
    images = inputs.random_images(batch, setup.image_size)
    if peer:
        model = peer.build(setup.arch, setup.image_size)
        prepared = model.prepare(images)
        call = (lambda: model.train_step(prepared)) if task == "train" else (
            lambda: model.maps_and_scores(prepared))
    else:
        variant = OUR_TRAIN_VARIANTS.get(impl, PLAIN)
        config = speed_setup.load_config("rd4ad", setup, config_dir, variant.overrides)
        model = harness.build(config, setup.bank_entries)
        call = harness.TrainStep(model, config, images, teacher_cache=variant.teacher_cache) if task == "train" else (
            lambda f=harness.Inference(model, config): f(images))
    for _ in range(2):
        timing.block(call())
    peak = memory.peak_rss_mib()
    result = {"task": task, "impl": impl, "after_imports_mib": round(after_imports, 1),
              "peak_mib": round(peak, 1), "beyond_imports_mib": round(peak - after_imports, 1)}
    device_peak = peer.peak_memory_mib() if peer else memory.device_peak_mib()
    if device_peak is not None:
        result["device_peak_mib"], result["device_peak_source"] = round(device_peak[0], 1), device_peak[1]
    return result


def probe_in_subprocess(task: str, impl: str, setup: speed_setup.Setup, *, peer: speed_setup.Peer | None,
                        config_dir: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.speed_memory", f"--probe={task}:{impl}",
               f"--tiny={setup.name == 'tiny'}", *(peer.probe_flags if peer else ()),
               f"--config_dir={os.path.abspath(config_dir)}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe {task}:{impl} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_section(run) -> None:
    """The memory/* rows of `run` (a `benchmarks.speed.Run`): train and inference, ours and each
    peer (anomalib's rows `memory/<task>...`, another peer's `memory/<task>..._vs_<peer>`)."""
    results = {}
    for task in TASKS:
        variants = [*OUR_TRAIN_VARIANTS] if task == "train" else []
        for impl in ["ours", *run.peers, *variants]:  # interleaved: ours, peers, ours, peers
            measure = probe_in_subprocess if run.setup.memory_subprocess else probe
            results[task, impl] = measure(task, impl, run.setup, peer=run.peers.get(impl), config_dir=run.config_dir)
    run.extra["memory_probes"] = {f"{t}:{i}": r for (t, i), r in results.items()}
    # anomalib first: without it, its rows still come, ours alone (peer None).
    sides = [(None, "", run.peer_label)] if "anomalib" not in run.peers else []
    sides += [(name, peer.row_suffix, peer.label) for name, peer in run.peers.items()]
    for task in TASKS:
        ours = results[task, "ours"]
        what = (f"train step, batch {run.setup.train_batch}" if task == "train"
                else f"inference, batch {max(run.setup.infer_batches)}")
        for name, suffix, label in sides:
            peer = results.get((task, name), {})
            if "device_peak_mib" in ours:
                run.rows.append(Row(f"memory/{task}_device{suffix}", "MiB", ours["device_peak_mib"],
                                    peer.get("device_peak_mib"), label,
                                    note=f"{what}; peak device memory: ours {ours['device_peak_source']}, "
                                         f"peer {peer.get('device_peak_source', '-')}"))
            run.rows.append(Row(f"memory/{task}{suffix}", "MiB", ours["beyond_imports_mib"],
                                peer.get("beyond_imports_mib"), label,
                                note=f"{what}; peak RSS minus RSS after imports"))
            run.rows.append(Row(f"memory/{task}_process{suffix}", "MiB", ours["peak_mib"],
                                peer.get("peak_mib"), label, note=f"{what}; whole-process peak RSS"))
            for impl, variant in OUR_TRAIN_VARIANTS.items() if task == "train" else ():
                run.rows.append(Row(f"memory/{task}{variant.row_suffix}{suffix}", "MiB",
                                    results[task, impl]["beyond_imports_mib"], peer.get("beyond_imports_mib"),
                                    label, note=f"{what}, {variant.setting}; peak RSS minus RSS after imports"))


def define_flags() -> None:
    """Only when run as a program (importing this module defines no flags)."""
    flags.DEFINE_string("probe", None, "'<task>:<impl>', task one of train, infer; impl ours, one of our train variants "
                        f"{tuple(OUR_TRAIN_VARIANTS)}, or a peer "
                        f"of {speed_setup.PEERS[:-1]}.")
    flags.DEFINE_bool("tiny", False, "The speed benchmark's tiny setup.")
    flags.DEFINE_string("official_dir", None, "The official RD4AD checkout (for impl=official).")
    flags.DEFINE_string("config_dir", "configs", "Folder of <method>.py configs (relative to the working directory).")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    task, _, impl = (f.probe or "").partition(":")
    impls = ("ours", *OUR_TRAIN_VARIANTS, *speed_setup.PEERS[:-1])
    if task not in TASKS or impl not in impls:
        raise app.UsageError(f"--probe={f.probe}: give <task>:<impl>, task in {TASKS}, impl in {impls}")
    peer = None
    if impl in speed_setup.PEERS:
        try:
            peers, reasons = speed_setup.load_peers([impl], f.official_dir)
        except ValueError as error:
            raise app.UsageError(str(error)) from None
        if impl not in peers:
            raise app.UsageError(reasons[impl])
        peer = peers[impl]
    result = probe(task, impl, speed_setup.setup_for(f.tiny), peer=peer, config_dir=f.config_dir)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
