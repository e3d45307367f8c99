"""ONNX exports side by side: our RD4AD (as ``python -m rgpkd_jax.export`` writes it) against
anomalib 2.7's own ONNX export of its ReverseDistillation (``ReverseDistillation.to_onnx``), both
run by onnxruntime on this machine's CPU.

Measured in one run: the artefact's size on disk (both exports keep their weights in a
``model.onnx.data`` file beside the graph; both files count), the latency of one
``InferenceSession.run`` per batch size, timed in interleaved rounds (ours, anomalib's, then the
other order next round) after an untimed warm-up, and memory: each (model, batch size) in its own
fresh process, the RSS that creating the session adds and the peak RSS of the process over
loading and one run, above the RSS after ``import onnxruntime``.

Both models have random weights (anomalib's backbone ``pre_trained=False``, our teacher
``weights=random``): this machine cannot download ImageNet weights, and the weights do not change
the work. What each graph computes is its export's own: ours maps a normalised NHWC batch to the
anomaly map (after the Gaussian) and the image score; anomalib's takes the [0, 1] NCHW image and
includes its pre-processor (normalisation) and post-processor (score normalisation, predicted label
and mask). Same onnxruntime settings for both: CPU provider, all graph optimisations, the same
number of intra-op threads. onnxruntime, onnx, anomalib, torch, onnxscript and jax2onnx are optional
(`REQUIRED`): imported only where used.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import numpy as np
from flax import nnx

from benchmarks import REPO
from benchmarks.speed import memory, timing
from benchmarks.speed.sizes import PEER_METHOD
from rgpkd_jax import config_files, exporting
from rgpkd_jax.models import build_model

ENGINES = ("ours", "anomalib")
REQUIRED = ("onnxruntime", "onnx", "anomalib", "torch", "onnxscript", "jax2onnx")


# ----------------------------------------------------------------------------- the two exports

def export_ours(directory: str, *, arch: str, image_size: int, config_dir: str, overrides: Sequence[str] = ()) -> str:
    """Our RD4AD (`<config_dir>/rd4ad.py`, random teacher, then `overrides`) exported as
    `rgpkd_jax.export` does; returns the .onnx path."""
    config = config_files.load_config(
        f"{os.path.join(config_dir, PEER_METHOD)}.py:synthetic/grid",
        [f"teacher.arch={arch}", "teacher.weights=random", f"dataset.image_size={image_size}", *overrides])
    model = build_model(config, nnx.Rngs(config.seed))
    description = exporting.describe(config, teacher_info={"arch": arch, "weights": "random"}, step=0,
                                     threshold={"threshold": float("nan")})
    path = os.path.join(directory, "ours", "model.onnx")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    exporting.write_onnx(exporting.onnx_model(exporting.map_function(model, config), image_size,
                                              {**description, "format": "onnx"}), path)
    return path


def export_anomalib(directory: str, *, arch: str, image_size: int) -> str:
    """anomalib's ReverseDistillation (random backbone) through its own ``to_onnx``."""
    import torch
    from anomalib.models import ReverseDistillation

    torch.manual_seed(0)
    model = ReverseDistillation(backbone=arch, pre_trained=False, evaluator=False, visualizer=False)
    return str(model.to_onnx(os.path.join(directory, "anomalib"), input_size=(image_size, image_size)))


def artefact_bytes(onnx_path: str) -> int:
    """The .onnx file plus the external-data files in its folder (anomalib's ``model.onnx.data``)."""
    folder = os.path.dirname(onnx_path)
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
               if name.startswith(os.path.basename(onnx_path)) and not name.endswith(".json"))


def example_input(engine: str, batch_size: int, image_size: int, seed: int = 0) -> np.ndarray:
    """What each export takes: ours normalised NHWC, anomalib's [0, 1] NCHW."""
    rng = np.random.default_rng(seed)
    if engine == "ours":
        return rng.standard_normal((batch_size, image_size, image_size, 3), dtype=np.float32)
    return rng.random((batch_size, 3, image_size, image_size), dtype=np.float32)


def open_session(path: str, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- measurements

def interleaved_latency(paths: dict[str, str], *, image_size: int, batch_sizes, repeats: int,
                        threads: int) -> dict[str, dict[int, list[float]]]:
    """Seconds of one session.run per engine and batch size; rounds alternate the engines' order."""
    sessions = {engine: open_session(path, threads) for engine, path in paths.items()}
    times: dict[str, dict[int, list[float]]] = {engine: {} for engine in paths}
    for batch_size in batch_sizes:
        cases = {}
        for engine, session in sessions.items():
            feed = {session.get_inputs()[0].name: example_input(engine, batch_size, image_size)}
            cases[engine] = lambda session=session, feed=feed: session.run(None, feed)
        # One untimed run each first: allocations, kernel selection.
        for engine, seconds in timing.interleaved(cases, warmup=1, repeats=repeats, alternate=True).items():
            times[engine][batch_size] = seconds
    return times


def memory_probe(path: str, engine: str, *, image_size: int, batch_size: int, threads: int) -> dict:
    """In this (fresh) process: RSS added by creating the session, and peak RSS over loading and one
    run, both above the RSS after importing onnxruntime (MiB)."""
    import onnxruntime  # noqa: F401 - the baseline includes the runtime itself
    base = memory.rss_mib()
    session = open_session(path, threads)
    loaded = memory.rss_mib()
    session.run(None, {session.get_inputs()[0].name: example_input(engine, batch_size, image_size)})
    return {"session_mib": round(loaded - base, 1), "peak_mib": round(memory.peak_rss_mib() - base, 1)}


def memory_in_subprocesses(paths: dict[str, str], *, image_size: int, batch_sizes, threads: int) -> dict:
    results: dict[str, dict[int, dict]] = {engine: {} for engine in paths}
    for batch_size in batch_sizes:
        for engine, path in paths.items():
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.export", f"--memory_probe={engine}:{path}",
                 f"--image_size={image_size}", f"--batch_sizes={batch_size}", f"--threads={threads}"],
                capture_output=True, text=True, cwd=REPO)
            if out.returncode:
                raise RuntimeError(f"memory probe {engine} (batch {batch_size}) failed:\n{out.stderr[-3000:]}")
            results[engine][batch_size] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


# ----------------------------------------------------------------------------- the benchmark

def measure(*, image_size: int = 256, batch_sizes=(1, 16), repeats: int = 5, arch: str = "wide_resnet50_2",
            threads: int | None = None, config_dir: str = "configs", overrides: Sequence[str] = (),
            directory: str | None = None) -> dict:
    """Exports both models, then measures sizes, interleaved latencies and memory; returns a dict
    (:func:`markdown` renders it)."""
    import onnxruntime

    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        export_seconds, paths = {}, {}
        for engine, export in (("ours", lambda: export_ours(tmp, arch=arch, image_size=image_size,
                                                              config_dir=config_dir, overrides=overrides)),
                               ("anomalib", lambda: export_anomalib(tmp, arch=arch, image_size=image_size))):
            start = time.perf_counter()
            paths[engine] = export()
            export_seconds[engine] = round(time.perf_counter() - start, 1)
        load_before = timing.load_average()
        latency = interleaved_latency(paths, image_size=image_size, batch_sizes=batch_sizes,
                                      repeats=repeats, threads=threads)
        memory_mib = memory_in_subprocesses(paths, image_size=image_size, batch_sizes=batch_sizes, threads=threads)
        sizes = {engine: artefact_bytes(path) for engine, path in paths.items()}
        graphs = {engine: _graph_summary(path) for engine, path in paths.items()}
    return {
        "image_size": image_size, "arch": arch, "batch_sizes": list(batch_sizes), "repeats": repeats,
        "threads": threads, "onnxruntime": onnxruntime.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "load_average_before": load_before,
        "load_average_after": timing.load_average(),
        "weights": "random (no ImageNet download here): timing only",
        "export_seconds": export_seconds, "artefact_bytes": sizes, "graphs": graphs,
        "latency_s": {e: {str(b): v for b, v in per.items()} for e, per in latency.items()},
        "median_latency_s": {e: {str(b): round(statistics.median(v), 4) for b, v in per.items()}
                             for e, per in latency.items()},
        "memory_mib": {e: {str(b): v for b, v in per.items()} for e, per in memory_mib.items()},
    }


def _graph_summary(path: str) -> dict:
    import onnx
    model = onnx.load(path, load_external_data=False)
    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "nodes": len(model.graph.node), "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output]}


def markdown(result: dict) -> str:
    """The table: one row per batch size, ours against anomalib's and their ratio."""
    lat, mem, size = result["median_latency_s"], result["memory_mib"], result["artefact_bytes"]
    lines = [f"### ONNX export under onnxruntime {result['onnxruntime']} (CPU, {result['threads']} threads, "
             f"{result['arch']}, {result['image_size']} px, random weights)", "",
             "| batch | ours latency (s) | anomalib latency (s) | anomalib / ours | ours peak RSS (MiB) | "
             "anomalib peak RSS (MiB) | ours session RSS (MiB) | anomalib session RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for b in map(str, result["batch_sizes"]):
        lines.append(f"| {b} | {lat['ours'][b]:.3f} | {lat['anomalib'][b]:.3f} | "
                     f"{lat['anomalib'][b] / lat['ours'][b]:.2f} | {mem['ours'][b]['peak_mib']:.0f} | "
                     f"{mem['anomalib'][b]['peak_mib']:.0f} | {mem['ours'][b]['session_mib']:.0f} | "
                     f"{mem['anomalib'][b]['session_mib']:.0f} |")
    lines += ["", f"Artefact size: ours {size['ours'] / 1e6:.1f} MB, anomalib {size['anomalib'] / 1e6:.1f} MB "
              f"(graph + external data). Medians of {result['repeats']} interleaved runs; load average "
              f"{result['load_average_before']} before, {result['load_average_after']} after. "
              f"{result['weights']}."]
    return "\n".join(lines)
