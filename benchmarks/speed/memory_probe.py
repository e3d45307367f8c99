"""The speed benchmark's memory probe: the peak memory of one task, in a process of its own.

    python -m benchmarks.speed.memory_probe --probe=train:ours [--tiny]       # prints one JSON line
    python -m benchmarks.speed.memory_probe --probe=infer:official --official_dir=PATH [--tiny]

`benchmarks.speed` starts this once per (task, implementation), interleaved ours, peers, ours, peers,
so each peak is that task's alone. On the CPU it is the peak resident memory beyond the process's
RSS once its libraries are imported; on an accelerator, the device's own count of the task's
peak allocation (jax `memory_stats()["peak_bytes_in_use"]`, torch `max_memory_allocated`).
"""

from __future__ import annotations

import json
from typing import NamedTuple, Sequence

from absl import flags

from benchmarks import common_flags
from benchmarks.speed import inputs, memory, sizes, timing, torch_peer
from benchmarks.speed.peers import PEERS, Peer, load_peers
from rgpkd_jax import cli

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
IMPLS = ("ours", *OUR_TRAIN_VARIANTS, *PEERS[:-1])


def probe(task: str, impl: str, setup: sizes.Setup, *, peer: Peer | None = None, config_dir: str,
          overrides: Sequence[str] = ()) -> dict:
    """Peak memory of one task (two calls: the first compiles) in this process: ours (`impl` 'ours'
    or one of OUR_TRAIN_VARIANTS, with `overrides` on the config) or `peer`'s (`impl` its name)."""
    if peer:
        peer.import_all()
    else:
        # Imported here, not at the top: a peer's probe process holds none of our library, whose
        # modules would count in that peer's whole-process peak (the memory/*_process rows).
        from benchmarks.speed import harness
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
        config = sizes.load_config(sizes.PEER_METHOD, setup, config_dir, (*overrides, *variant.overrides))
        model = harness.build(config, setup.bank_entries)
        call = harness.TrainStep(model, config, images, teacher_cache=variant.teacher_cache) if task == "train" else (
            lambda f=harness.Inference(model, config): f(images))
    for _ in range(2):
        timing.block(call())
    peak = memory.peak_rss_mib()
    result = {"task": task, "impl": impl, "after_imports_mib": round(after_imports, 1),
              "peak_mib": round(peak, 1), "beyond_imports_mib": round(peak - after_imports, 1)}
    device_peak = torch_peer.peak_memory_mib() if peer else memory.device_peak_mib()
    if device_peak is not None:
        result["device_peak_mib"], result["device_peak_source"] = round(device_peak[0], 1), device_peak[1]
    return result


def define_flags() -> None:
    flags.DEFINE_string("probe", None, f"'<task>:<impl>', task one of {TASKS}, impl one of {IMPLS}.")
    flags.DEFINE_bool("tiny", False, "The speed benchmark's tiny setup.")
    flags.DEFINE_string("official_dir", None, "The official RD4AD checkout (for impl=official).")
    common_flags.define_config_dir()
    common_flags.define_overrides()


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    task, _, impl = (f.probe or "").partition(":")
    if task not in TASKS or impl not in IMPLS:
        raise ValueError(f"--probe={f.probe}: give <task>:<impl>, task in {TASKS}, impl in {IMPLS}")
    peer = None
    if impl in PEERS:
        peers, reasons = load_peers([impl], f.official_dir)
        if impl not in peers:
            raise ValueError(f"--probe={f.probe}: {reasons[impl]}")
        peer = peers[impl]
    result = probe(task, impl, sizes.setup_for(f.tiny), peer=peer, config_dir=f.config_dir, overrides=f.overrides)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
