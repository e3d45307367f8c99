"""The speed benchmark's memory rows: one probe (`memory_probe`) per task and implementation, each in
a fresh process at full size (in this process at the tiny size: structure only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks import REPO
from benchmarks.speed import memory_probe, sizes
from benchmarks.speed.peers import Peer
from benchmarks.speed.report import Row
from benchmarks.speed.run import Run


def probe_in_subprocess(task: str, impl: str, setup: sizes.Setup, *, peer: Peer | None, config_dir: str,
                        overrides=()) -> dict:
    command = [sys.executable, "-m", "benchmarks.speed.memory_probe", f"--probe={task}:{impl}",
               f"--tiny={setup.name == 'tiny'}", *(peer.probe_flags if peer else ()),
               f"--config_dir={os.path.abspath(config_dir)}", *(f"--overrides={o}" for o in overrides)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe {task}:{impl} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_section(run: Run) -> None:
    """The memory/* rows of `run`: train and inference, ours and each peer
    (anomalib's rows `memory/<task>...`, another peer's `memory/<task>..._vs_<peer>`)."""
    results = {}
    for task in memory_probe.TASKS:
        variants = [*memory_probe.OUR_TRAIN_VARIANTS] if task == "train" else []
        for impl in ["ours", *run.peers, *variants]:  # interleaved: ours, peers, ours, peers
            measure = probe_in_subprocess if run.setup.memory_subprocess else memory_probe.probe
            results[task, impl] = measure(task, impl, run.setup, peer=run.peers.get(impl), config_dir=run.config_dir,
                                          overrides=run.overrides)
    run.extra["memory_probes"] = {f"{t}:{i}": r for (t, i), r in results.items()}
    # anomalib first: without it, its rows still come, ours alone (peer None).
    sides = [(None, "", run.peer_label)] if "anomalib" not in run.peers else []
    sides += [(name, peer.row_suffix, peer.label) for name, peer in run.peers.items()]
    for task in memory_probe.TASKS:
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
            for impl, variant in memory_probe.OUR_TRAIN_VARIANTS.items() if task == "train" else ():
                run.rows.append(Row(f"memory/{task}{variant.row_suffix}{suffix}", "MiB",
                                    results[task, impl]["beyond_imports_mib"], peer.get("beyond_imports_mib"),
                                    label, note=f"{what}, {variant.setting}; peak RSS minus RSS after imports"))
