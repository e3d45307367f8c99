"""The speed benchmark's memory rows: peak memory of one task, in a fresh process each.

    python -m benchmarks.speed_memory --probe=train:ours [--tiny] [--peer=none]   # prints one JSON line

`benchmarks.speed` starts this once per (task, implementation), interleaved ours, peer, ours, peer,
so each peak is that task's alone. On the CPU it is the peak resident memory beyond the process's
RSS once its libraries are imported; on an accelerator, the device's own count of the task's
peak allocation (jax `memory_stats()["peak_bytes_in_use"]`, torch `max_memory_allocated`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app, flags

from benchmarks import harness, inputs, memory, speed_setup, timing
from benchmarks.speed_report import Row

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("train", "infer")


def probe(task: str, impl: str, setup: speed_setup.Setup, *, peer: str = "anomalib",
          config_dir: str = "configs") -> dict:
    """Peak memory of one task (two calls: the first compiles) in this process."""
    if impl == "peer":
        peer_module, reason = speed_setup.load_peer(peer)
        if peer_module is None:
            raise RuntimeError(reason)
        peer_module.import_all()
    else:
        from rgpkd_jax import evaluate, train  # noqa: F401  (imports count in the baseline)
    after_imports = memory.rss_mib()
    batch = setup.train_batch if task == "train" else max(setup.infer_batches)
    images = inputs.random_images(batch, setup.image_size)
    if impl == "peer":
        model = peer_module.ReverseDistillationPeer(setup.arch, setup.image_size)
        prepared = model.prepare(images)
        call = (lambda: model.train_step(prepared)) if task == "train" else (
            lambda: model.maps_and_scores(prepared))
    else:
        config = speed_setup.load_config("rd4ad", setup, config_dir)
        model = harness.build(config, setup.bank_entries)
        call = harness.TrainStep(model, config, images) if task == "train" else (
            lambda f=harness.Inference(model, config): f(images))
    for _ in range(2):
        timing.block(call())
    peak = memory.peak_rss_mib()
    result = {"task": task, "impl": impl, "after_imports_mib": round(after_imports, 1),
              "peak_mib": round(peak, 1), "beyond_imports_mib": round(peak - after_imports, 1)}
    device_peak = peer_module.peak_memory_mib() if impl == "peer" else memory.device_peak_mib()
    if device_peak is not None:
        result["device_peak_mib"], result["device_peak_source"] = round(device_peak[0], 1), device_peak[1]
    return result


def probe_in_subprocess(task: str, impl: str, setup: speed_setup.Setup, *, peer: str, config_dir: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.speed_memory", f"--probe={task}:{impl}",
               f"--tiny={setup.name == 'tiny'}", f"--peer={peer}", f"--config_dir={os.path.abspath(config_dir)}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe {task}:{impl} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_section(run) -> None:
    """The memory/* rows of `run` (a `benchmarks.speed.Run`): train and inference, ours and peer."""
    impls = ["ours"] + (["peer"] if run.peer else [])
    results = {}
    for task in TASKS:
        for impl in impls:  # interleaved: ours, peer, ours, peer
            measure = probe_in_subprocess if run.setup.memory_subprocess else probe
            results[task, impl] = measure(task, impl, run.setup, peer=run.peer_name, config_dir=run.config_dir)
    run.extra["memory_probes"] = {f"{t}:{i}": r for (t, i), r in results.items()}
    for task in TASKS:
        ours, peer = results[task, "ours"], results.get((task, "peer"))
        what = (f"train step, batch {run.setup.train_batch}" if task == "train"
                else f"inference, batch {max(run.setup.infer_batches)}")
        if "device_peak_mib" in ours:
            run.rows.append(Row(f"memory/{task}_device", "MiB", ours["device_peak_mib"],
                                peer.get("device_peak_mib") if peer else None, run.peer_label,
                                note=f"{what}; peak device memory: ours {ours['device_peak_source']}, "
                                     f"peer {peer.get('device_peak_source') if peer else '-'}"))
        run.rows.append(Row(f"memory/{task}", "MiB", ours["beyond_imports_mib"],
                            peer["beyond_imports_mib"] if peer else None, run.peer_label,
                            note=f"{what}; peak RSS minus RSS after imports"))
        run.rows.append(Row(f"memory/{task}_process", "MiB", ours["peak_mib"],
                            peer["peak_mib"] if peer else None, run.peer_label,
                            note=f"{what}; whole-process peak RSS"))


def define_flags() -> None:
    """Only when run as a program (importing this module defines no flags)."""
    flags.DEFINE_string("probe", None, "'<task>:<impl>', task one of train, infer; impl ours or peer.")
    flags.DEFINE_bool("tiny", False, "The speed benchmark's tiny setup.")
    flags.DEFINE_enum("peer", "anomalib", speed_setup.PEERS, "Peer implementation (for impl=peer).")
    flags.DEFINE_string("config_dir", "configs", "Folder of <method>.py configs (relative to the working directory).")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    task, _, impl = (f.probe or "").partition(":")
    if task not in TASKS or impl not in ("ours", "peer"):
        raise app.UsageError(f"--probe={f.probe}: give <task>:<impl>, task in {TASKS}, impl ours or peer")
    result = probe(task, impl, speed_setup.setup_for(f.tiny), peer=f.peer, config_dir=f.config_dir)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
