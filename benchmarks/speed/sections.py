"""The speed benchmark's sections and their plan: each section times ours against the peers in
interleaved rounds and adds its rows to the `Run` (rows and targets: benchmarks/README.md)."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import time
from typing import Sequence

import jax
from absl import logging

from benchmarks import common_flags
from benchmarks.speed import aupro_loop, harness, inputs, memory_rows, report, sizes, timing
from benchmarks.speed.peers import Peer
from benchmarks.speed.report import Row
from benchmarks.speed.run import VARIANTS, Run, ceiling, peer_rows
from benchmarks.speed.sizes import PEER_METHOD, Setup
from rgpkd_jax import evaluate
from rgpkd_jax.metrics import aupro, summary
from rgpkd_jax.models import list_methods

SECTIONS = ("train", "inference", "evaluation", "aupro", "memory", "variants")
DEFAULT_SECTIONS = SECTIONS[:-1]  # variants: ask for it (on a CPU its bfloat16 rows take long)


def train_section(run: Run, method: str) -> None:
    setup = run.setup
    config = run.config(method)
    images = inputs.random_images(setup.train_batch, setup.image_size)
    ours = harness.TrainStep(harness.build(config, setup.bank_entries), config, images)
    cached = harness.TrainStep(harness.build(config, setup.bank_entries), config, images, teacher_cache=True)
    cases = {"ours": ours, "ours_teacher_cache": cached}
    models = {}  # peer name -> (its model, its batch); the peers run RD4AD only
    if method == PEER_METHOD:
        remat_config = run.config(method, ("model.remat=decoder",))
        cases["ours_remat"] = harness.TrainStep(harness.build(remat_config, setup.bank_entries), remat_config, images)
        matmul = timing.MatmulPeak()
        cases["matmul"] = matmul
        for name, peer in run.peers.items():
            model = peer.build(setup.arch, setup.image_size)
            models[name] = model, model.prepare(images)
            cases[name] = lambda model=model, batch=models[name][1]: model.train_step(batch)
    times = run.timed(f"train/{method}", cases)
    rows = peer_rows(run, f"train/{method}", setup.train_batch, times, list(models),
                     no_peer_label="(no peer for this method)")
    run.rows.extend(rows.values())
    variants = {"teacher_cache": "train.teacher_cache=device: the teacher's features read from a device cache"}
    if method == PEER_METHOD:
        variants["remat"] = "model.remat=decoder: the decoder blocks recomputed in the backward pass"
    for variant, setting in variants.items():
        run.rows.append(Row(f"train/{method}_{variant}_vs_ours", "images/s",
                            timing.rate(setup.train_batch, times[f"ours_{variant}"]),
                            timing.rate(setup.train_batch, times["ours"]), "ours, plain step", note=setting))
        if method == PEER_METHOD:  # the variant against the peers, in the same rounds
            run.rows.extend(peer_rows(run, f"train/{method}_{variant}", setup.train_batch,
                                      {**times, "ours": times[f"ours_{variant}"]}, list(models),
                                      no_peer_label="(no peer)", note=setting).values())
    if method != PEER_METHOD:
        return
    flops = ours.flops()
    peak = matmul.gflops
    for name, row in rows.items():
        row.ceiling = ceiling(flops, peak, times.get(name))
    run.extra[f"{method}_train_step"] = {
        "flops_per_step": flops, "matmul_gflops_best": peak,
        "matmul_gflops_samples": matmul.samples,
        "xla_memory": ours.memory()}
    achieved = flops / timing.median(times["ours"]) / 1e9 if flops else None
    run.rows.append(Row(f"train/{method}_fraction_of_peak", "GFLOP/s", achieved, peak,
                        "best fp32 matmul (XLA, 2048^2) of the same rounds",
                        note=f"{flops / 1e9:.0f} GFLOP per step (XLA cost analysis)" if flops else
                        "XLA reported no flop count"))
    why = {"anomalib": "; anomalib's OCE is narrower",
           "official": "; the official step also back-propagates into the teacher (benchmarks/NOTES.md)"}
    for name, (model, batch) in models.items():
        peer_flops = model.train_flops(batch)
        run.extra[f"{method}_train_step"][f"{name}_flops_per_step"] = peer_flops
        rows[name].note = (f"FLOPs per step: ours {flops / 1e9:.3g} G (XLA), {name} {peer_flops / 1e9:.3g} G "
                           f"(torch FlopCounterMode){why[name]}") if flops and peer_flops else ""


def inference_section(run: Run) -> None:
    setup = run.setup
    config = run.config(PEER_METHOD)
    ours = harness.Inference(harness.build(config, setup.bank_entries), config)
    models = {name: peer.build(setup.arch, setup.image_size) for name, peer in run.peers.items()}
    for batch_size in setup.infer_batches:
        matmul = timing.MatmulPeak()
        images = inputs.random_images(batch_size, setup.image_size, seed=batch_size)
        cases = {"ours": lambda: ours(images), "matmul": matmul}
        for name, model in models.items():
            cases[name] = lambda model=model, batch=model.prepare(images): model.maps_and_scores(batch)
        times = run.timed(f"infer/batch{batch_size}", cases)
        run.extra[f"infer_batch{batch_size}_matmul_gflops_samples"] = matmul.samples
        # Rows are named after the full-size batch (1 or 16) so tiny and full tables line up.
        name = f"infer/batch{sizes.FULL.infer_batches[setup.infer_batches.index(batch_size)]}"
        rows = peer_rows(run, name, batch_size, times, list(models), no_peer_label=run.peer_label,
                         note=f"batch {batch_size}")
        flops = ours.flops(images)
        for peer, row in rows.items():
            row.ceiling = ceiling(flops, matmul.gflops, times.get(peer))
        run.rows.extend(rows.values())


def evaluation_section(run: Run) -> None:
    setup = run.setup
    config = run.config(PEER_METHOD)
    n = setup.eval_images
    _, masks, labels = inputs.anomaly_test_set(n, setup.image_size)
    images = inputs.random_images(n, setup.image_size, seed=7)
    runner = evaluate.MapRunner(harness.build(config, setup.bank_entries), config)

    def ours():  # what `evaluate_model` does minus files: maps of the test set, then the three metrics
        maps, scores = runner(images)
        return summary.compute_metrics(maps, masks, labels, scores=scores, per_image_aupro=False)

    cases = {"ours": ours}
    if run.peer:
        peer = run.peer.ReverseDistillationPeer(setup.arch, setup.image_size)
        cases["peer"] = lambda: peer.evaluate(images, masks, labels, setup.eval_batch)
    times = run.timed("eval/end_to_end", cases)
    run.rows.append(Row("eval/end_to_end", "images/s", timing.rate(n, times["ours"]),
                        timing.rate(n, times["peer"]) if run.peer else None, run.peer_label,
                        note=f"{n} images, batch {setup.eval_batch}; image AUROC, pixel AUROC, AU-PRO"))


def aupro_section(run: Run) -> None:
    n = run.setup.aupro_images
    maps, masks, _ = inputs.anomaly_test_set(n, run.setup.image_size, seed=n)
    loop = aupro_loop.threshold_loop_aupro
    values = {}

    def keep(name, fn):
        def call():
            values[name] = fn()
        return call

    cases = {"per_image": keep("per_image", lambda: aupro.aupro_rd4ad_per_image(maps, masks).mean),
             "official": keep("official", lambda: aupro.aupro(maps, masks)),
             "threshold_loop": keep("threshold_loop", lambda: loop(maps, masks)),
             "threshold_loop_label_once": keep("threshold_loop_label_once",
                                               lambda: loop(maps, masks, label_once=True))}
    if run.peer:
        cases["anomalib"] = keep("anomalib", lambda: run.peer.anomalib_aupro(maps, masks))
    times = run.timed("aupro", cases, warmup=0)
    run.extra["aupro_values"] = values
    agree = max(abs(values["per_image"] - values[k]) for k in ("threshold_loop", "threshold_loop_label_once"))
    per_image_rate, loop_rate = timing.rate(n, times["per_image"]), timing.rate(n, times["threshold_loop"])
    run.rows.append(Row("aupro/rd4ad_per_image_vs_threshold_loop", "images/s", per_image_rate, loop_rate,
                        "threshold loop as coded (§2.6)", note=f"{n} maps; same metric, |difference| {agree:.1e}"))
    run.rows.append(Row("aupro/rd4ad_per_image_vs_loop_labelled_once", "images/s", per_image_rate,
                        timing.rate(n, times["threshold_loop_label_once"]),
                        "threshold loop, regions labelled once per image",
                        note="a kinder baseline than the official code"))
    run.rows.append(Row("aupro/official_vs_threshold_loop", "images/s", timing.rate(n, times["official"]),
                        loop_rate, "threshold loop as coded (§2.6)",
                        note="a different metric (official, pooled, exact) against the per-image loop"))
    if run.peer:
        run.rows.append(Row("aupro/official_vs_anomalib", "images/s", timing.rate(n, times["official"]),
                            timing.rate(n, times["anomalib"]), run.peer_label,
                            note=f"ours {values['official']:.4f}, anomalib {values['anomalib']:.4f}"))


def variants_section(run: Run) -> None:
    """Our RD4AD per (conv_impl, compute_dtype): train step and inference at the largest batch."""
    setup = run.setup
    train_images = inputs.random_images(setup.train_batch, setup.image_size)
    batch = max(setup.infer_batches)
    infer_images = inputs.random_images(batch, setup.image_size, seed=batch)
    train_cases, infer_cases = {}, {}
    for impl, dtype in run.variants:
        config = run.config(PEER_METHOD, (f"model.conv_impl={impl}", f"model.compute_dtype={dtype}"))
        train_cases[f"{impl},{dtype}"] = harness.TrainStep(harness.build(config), config, train_images)
        infer = harness.Inference(harness.build(config), config)
        infer_cases[f"{impl},{dtype}"] = lambda infer=infer: infer(infer_images)
    if run.peer:
        peer = run.peer.ReverseDistillationPeer(setup.arch, setup.image_size)
        train_batch, infer_batch = peer.prepare(train_images), peer.prepare(infer_images)
        train_cases["peer"] = lambda: peer.train_step(train_batch)
        infer_cases["peer"] = lambda: peer.maps_and_scores(infer_batch)
    for task, cases, n in (("train", train_cases, setup.train_batch), ("infer", infer_cases, batch)):
        times = run.timed(f"variant/{task}", cases)
        for impl, dtype in run.variants:
            run.rows.append(Row(f"variant/{task}[{impl},{dtype}]", "images/s",
                                timing.rate(n, times[f"{impl},{dtype}"]),
                                timing.rate(n, times["peer"]) if run.peer else None, run.peer_label,
                                note=f"RD4AD {task}, batch {n}; peer in float32"))


def write_profile(setup: Setup, config_dir: str, profile_dir: str, overrides: Sequence[str] = (),
                  steps: int = 3) -> None:
    """A jax profiler trace of `steps` of our RD4AD train steps (compiled before the trace)."""
    config = sizes.load_config(PEER_METHOD, setup, config_dir, overrides)
    step = harness.TrainStep(harness.build(config, setup.bank_entries), config,
                             inputs.random_images(setup.train_batch, setup.image_size))
    timing.block(step())
    with jax.profiler.trace(profile_dir):
        for _ in range(steps):
            timing.block(step())
    logging.info("profiler trace written to %s", profile_dir)


def parse_variants(items: list[str]) -> tuple[tuple[str, str], ...]:
    """`["xla:float32", ...]` -> (("xla", "float32"), ...)."""
    return tuple(tuple(item.split(":", 1)) if ":" in item else (item, "") for item in items)


def check_choices(sections: Sequence[str], methods: Sequence[str], variants: Sequence[tuple[str, str]]) -> None:
    """One line naming the flag for a section, method or variant that does not exist."""
    common_flags.check_choices("sections", sections, SECTIONS)
    common_flags.check_methods(methods)
    common_flags.check_choices("variants", [":".join(v) for v in variants], [":".join(v) for v in VARIANTS])


def benchmark(setup: Setup, *, sections: Sequence[str] = DEFAULT_SECTIONS, methods: Sequence[str] | None = None,
              peers: dict[str, Peer] | None = None, peer_reasons: dict[str, str] | None = None,
              budget_s: float = 600.0, config_dir: str = "configs", overrides: Sequence[str] = (),
              command: str = "", variants: tuple[tuple[str, str], ...] = VARIANTS) -> dict:
    """Runs the asked sections (most important first, so a tight budget drops the ours-only rows)
    and returns the result that `report.write` writes. `methods`: whose train steps are timed
    (default: every registered one); `peers`, `peer_reasons`: what `peers.load_peers` returns
    (none: ours alone)."""
    methods = list_methods() if methods is None else methods
    check_choices(sections, methods, variants)
    peers = peers or {}
    run = Run(setup, peers, budget_s=budget_s, config_dir=config_dir, variants=variants, overrides=overrides)
    load_start = timing.load_average()
    plan = [(f"train/{PEER_METHOD}", "train", functools.partial(train_section, run, PEER_METHOD)),
            ("inference", "inference", functools.partial(inference_section, run)),
            ("aupro", "aupro", functools.partial(aupro_section, run)),
            ("evaluation", "evaluation", functools.partial(evaluation_section, run)),
            ("memory", "memory", functools.partial(memory_rows.memory_section, run)),
            ("variants", "variants", functools.partial(variants_section, run))]
    plan += [(f"train/{m}", "train", functools.partial(train_section, run, m))
             for m in list_methods() if m != PEER_METHOD]
    for name, kind, fn in plan:
        if kind in sections and (kind != "train" or name.split("/")[1] in methods):
            run.section(name, fn)
    return {
        "setup_name": setup.name, "setup": dataclasses.asdict(setup), "command": command,
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} CPUs)",
        "versions": {"jax": jax.__version__, "python": platform.python_version(),
                     **{key: value for peer in peers.values() for key, value in peer.versions.items()}},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "peers": {**{name: {"label": peer.label, "reason": ""} for name, peer in peers.items()},
                  **{name: {"label": "(not run)", "reason": reason} for name, reason in (peer_reasons or {}).items()}},
        "load_average_start": load_start, "load_average_end": timing.load_average(),
        "load_average_per_section": run.load, "elapsed_s": round(time.perf_counter() - run.start, 1),
        "rows": [r.to_dict() for r in report.sorted_rows(run.rows)], "skipped": run.skipped,
        "failed": run.failed,
        "seconds_per_call": run.raw, "extra": run.extra,
    }
