"""Speed and memory of rgpkd_jax against PyTorch peers, as ratios from one run.

    python -m benchmarks.speed                      # full size; with the anomalib peer if installed
    python -m benchmarks.speed --peers=anomalib,official --official_dir=PATH
                                                    # also the official RD4AD code (PATH: a checkout of
                                                    # github.com/hq-deng/RD4AD; never vendored, not in CI)
    python -m benchmarks.speed --peers=none         # ours alone
    python -m benchmarks.speed --tiny               # structure check: resnet18, 64 px, batch 2, 1 repeat

The peers are anomalib's ReverseDistillation (`benchmarks.peers`) and the official RD4AD code
(`benchmarks.official_peer`). All implementations run in one process on the same inputs (random
weights, random images), in interleaved rounds (A B A B ...) after untimed warm-up rounds; every
number is a median over the rounds, and each row's ratio (ours / peer) is taken between medians of
the same rounds, so load from other processes falls on both sides alike. The machine's load average
is recorded before and after each section. Peak memory is measured in a fresh subprocess per
implementation and task (`benchmarks.speed_memory`).

Rows (images/s unless said otherwise; the peer is anomalib's. With --peers including official,
train/rd4ad, infer/batch<B> and memory/* also come as `<row>_vs_official`, against the official
code timed in the same rounds; the targets are against anomalib):
  train/<method>          one train step (forward, loss, backward, Adam), batch 16, 256 px;
  train/<method>_teacher_cache_vs_ours  the same step reading the teacher's features from a device
                          cache (train.teacher_cache=device), against ours running the teacher;
                          train/rd4ad_teacher_cache[_vs_official]: that step against the peers;
  train/rd4ad_remat_vs_ours  the step with model.remat=decoder against the plain one;
                          train/rd4ad_remat[_vs_official]: against the peers;
  train/rd4ad_fraction_of_peak  XLA's flop count of our RD4AD train step / its median time,
                          over the best fp32 matmul rate sampled in the same rounds;
  infer/batch<B>          forward + anomaly map + score, maps back on the host;
  eval/end_to_end         forward + maps over a test set, image AUROC, pixel AUROC, AU-PRO;
  aupro/*                 AU-PRO alone on the same maps against the per-image threshold loop as
                          RD4AD's code computes it (docs/reference.md §2.6; regions relabelled at every
                          threshold), the same loop labelling once per image, and anomalib's AUPRO;
  memory/*                peak resident memory (MiB), beyond the process's RSS once its libraries
                          are imported, and of the whole process; on an accelerator also the
                          device's own peak allocation (memory/*_device);
  variant/*               (--section=variants) RD4AD train step and batch-16 inference for each
                          model.conv_impl (xla: plain lax/nnx ops; cpu: the XLA:CPU rewrites) and
                          model.compute_dtype (float32, bfloat16), interleaved with the peer.
Train and inference rows also carry a `ceiling`: the ratio ours / peer if our computation ran at
the best matmul rate sampled in the same rounds; a target above it cannot be met on this machine.
Writes `speed.json` and `speed.md` into --output_dir. `--profile_dir` also writes a jax profiler
trace of a few of our train steps (for TensorBoard / Perfetto).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from typing import Callable

import jax
from absl import app, flags, logging

from benchmarks import aupro_reference_loop, harness, inputs, speed_memory, speed_report, timing
from benchmarks.speed_report import Row
from benchmarks.speed_setup import FULL, METHODS, PEERS, Peer, Setup, load_config, load_peers, setup_for

SECTIONS = ("train", "inference", "evaluation", "aupro", "memory", "variants")
DEFAULT_SECTIONS = SECTIONS[:-1]  # variants: ask for it (on a CPU its bfloat16 rows take long)
# (model.conv_impl, model.compute_dtype) pairs of the variants section.
VARIANTS = (("xla", "float32"), ("cpu", "float32"), ("xla", "bfloat16"), ("cpu", "bfloat16"))


class Run:
    """Collects rows, raw timings, load averages, skipped and failed sections of one benchmark run."""

    def __init__(self, setup: Setup, peers: dict[str, Peer], *, budget_s: float, config_dir: str,
                 variants: tuple[tuple[str, str], ...] = VARIANTS):
        self.setup, self.peers, self.config_dir, self.variants = setup, peers, config_dir, variants
        anomalib = peers.get("anomalib")
        # anomalib's module: its peer is also timed in the evaluation, AU-PRO and variants sections.
        self.peer = anomalib.module if anomalib else None
        self.peer_label = anomalib.label if anomalib else "(no peer)"
        self.rows: list[Row] = []
        self.raw: dict[str, dict] = {}
        self.load: dict[str, dict] = {}
        self.skipped: list[str] = []
        self.failed: list[str] = []  # a section's error does not take the other sections' rows with it
        self.extra: dict[str, object] = {}
        self.start, self.budget_s = time.perf_counter(), budget_s

    def config(self, method: str, overrides: tuple[str, ...] = ()):
        return load_config(method, self.setup, self.config_dir, overrides)

    def section(self, name: str, fn: Callable[[], None]) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed > self.budget_s:
            logging.warning("skipping %s: %.0f s elapsed, budget %.0f s", name, elapsed, self.budget_s)
            self.skipped.append(f"{name} (budget: {elapsed:.0f} s of {self.budget_s:.0f} s used)")
            return
        logging.info("section %s (load %s)", name, timing.load_average())
        before, t0 = timing.load_average(), time.perf_counter()
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - listed in the report; main() exits non-zero
            logging.exception("section %s failed", name)
            message = str(error).strip().splitlines()
            self.failed.append(f"{name}: {type(error).__name__}: {message[-1] if message else ''}")
        self.load[name] = {"before": before, "after": timing.load_average(),
                           "seconds": round(time.perf_counter() - t0, 1)}

    def timed(self, key: str, cases: dict, warmup: int | None = None) -> dict[str, list[float]]:
        times = timing.interleaved(cases, warmup=self.setup.warmup if warmup is None else warmup,
                                   repeats=self.setup.repeats)
        self.raw[key] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}
        logging.info("%s: %s", key, {n: f"{timing.median(t):.3f}s" for n, t in times.items()})
        return times


def _ceiling(flops: float | None, peak_gflops: float, peer_seconds: list[float] | None) -> float | None:
    """ours / peer if our `flops` ran at `peak_gflops`: the peer's time over that ideal time."""
    if not flops or not peer_seconds:
        return None
    return timing.median(peer_seconds) / (flops / 1e9 / peak_gflops)


def peer_rows(run: Run, name: str, images: int, times: dict[str, list[float]], peers: list[str], *,
              no_peer_label: str, **row_fields) -> dict[str, Row]:
    """Rows of ours against each peer in `peers` that ran (images/s): anomalib's is `name`, the others'
    `name_vs_<peer>`; without anomalib, `name` comes with no peer (labelled `no_peer_label`)."""
    ours = timing.rate(images, times["ours"])
    rows = {peer: Row(f"{name}{run.peers[peer].row_suffix}", "images/s", ours, timing.rate(images, times[peer]),
                      run.peers[peer].label, **row_fields) for peer in peers}
    if "anomalib" not in rows:
        rows["anomalib"] = Row(name, "images/s", ours, None, no_peer_label, **row_fields)
    return rows


def train_section(run: Run, method: str) -> None:
    setup = run.setup
    config = run.config(method)
    images = inputs.random_images(setup.train_batch, setup.image_size)
    ours = harness.TrainStep(harness.build(config, setup.bank_entries), config, images)
    cached = harness.TrainStep(harness.build(config, setup.bank_entries), config, images, teacher_cache=True)
    cases = {"ours": ours, "ours_teacher_cache": cached}
    models = {}  # peer name -> (its model, its batch); the peers run RD4AD only
    if method == "rd4ad":
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
    if method == "rd4ad":
        variants["remat"] = "model.remat=decoder: the decoder blocks recomputed in the backward pass"
    for variant, setting in variants.items():
        run.rows.append(Row(f"train/{method}_{variant}_vs_ours", "images/s",
                            timing.rate(setup.train_batch, times[f"ours_{variant}"]),
                            timing.rate(setup.train_batch, times["ours"]), "ours, plain step", note=setting))
        if method == "rd4ad":  # the variant against the peers, in the same rounds
            run.rows.extend(peer_rows(run, f"train/{method}_{variant}", setup.train_batch,
                                      {**times, "ours": times[f"ours_{variant}"]}, list(models),
                                      no_peer_label="(no peer)", note=setting).values())
    if method != "rd4ad":
        return
    flops = ours.flops()
    peak = matmul.gflops
    for name, row in rows.items():
        row.ceiling = _ceiling(flops, peak, times.get(name))
    run.extra["rd4ad_train_step"] = {
        "flops_per_step": flops, "matmul_gflops_best": peak,
        "matmul_gflops_samples": matmul.samples,
        "xla_memory": ours.memory()}
    achieved = flops / timing.median(times["ours"]) / 1e9 if flops else None
    run.rows.append(Row("train/rd4ad_fraction_of_peak", "GFLOP/s", achieved, peak,
                        "best fp32 matmul (XLA, 2048^2) of the same rounds",
                        note=f"{flops / 1e9:.0f} GFLOP per step (XLA cost analysis)" if flops else
                        "XLA reported no flop count"))
    why = {"anomalib": "; anomalib's OCE is narrower",
           "official": "; the official step also back-propagates into the teacher (benchmarks/NOTES.md)"}
    for name, (model, batch) in models.items():
        peer_flops = model.train_flops(batch)
        run.extra["rd4ad_train_step"][f"{name}_flops_per_step"] = peer_flops
        rows[name].note = (f"FLOPs per step: ours {flops / 1e9:.3g} G (XLA), {name} {peer_flops / 1e9:.3g} G "
                           f"(torch FlopCounterMode){why[name]}") if flops and peer_flops else ""


def inference_section(run: Run) -> None:
    setup = run.setup
    config = run.config("rd4ad")
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
        name = f"infer/batch{FULL.infer_batches[setup.infer_batches.index(batch_size)]}"
        rows = peer_rows(run, name, batch_size, times, list(models), no_peer_label=run.peer_label,
                         note=f"batch {batch_size}")
        flops = ours.flops(images)
        for peer, row in rows.items():
            row.ceiling = _ceiling(flops, matmul.gflops, times.get(peer))
        run.rows.extend(rows.values())


def evaluation_section(run: Run) -> None:
    from rgpkd_jax import evaluate
    from rgpkd_jax.metrics import summary
    setup = run.setup
    config = run.config("rd4ad")
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
    from rgpkd_jax.metrics import aupro
    n = run.setup.aupro_images
    maps, masks, _ = inputs.anomaly_test_set(n, run.setup.image_size, seed=n)
    loop = aupro_reference_loop.threshold_loop_aupro
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
        config = run.config("rd4ad", (f"model.conv_impl={impl}", f"model.compute_dtype={dtype}"))
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


def write_profile(setup: Setup, config_dir: str, profile_dir: str, steps: int = 3) -> None:
    """A jax profiler trace of `steps` of our RD4AD train steps (compiled before the trace)."""
    config = load_config("rd4ad", setup, config_dir)
    step = harness.TrainStep(harness.build(config, setup.bank_entries), config,
                             inputs.random_images(setup.train_batch, setup.image_size))
    timing.block(step())
    with jax.profiler.trace(profile_dir):
        for _ in range(steps):
            timing.block(step())
    logging.info("profiler trace written to %s", profile_dir)


def check_choices(sections, methods, variants=VARIANTS) -> None:
    for flag, given, known in (("--section", sections, SECTIONS), ("--method", methods, METHODS),
                               ("--variant", variants, VARIANTS)):
        if set(given) - set(known):
            raise ValueError(f"{flag}: unknown {sorted(set(given) - set(known))}; choose from {known}")


def parse_variants(items: list[str]) -> tuple[tuple[str, str], ...]:
    """`["xla:float32", ...]` -> (("xla", "float32"), ...)."""
    return tuple(tuple(item.split(":", 1)) if ":" in item else (item, "") for item in items)


def benchmark(setup: Setup, *, sections=DEFAULT_SECTIONS, methods=METHODS, peers: dict[str, Peer] | None = None,
              peer_reasons: dict[str, str] | None = None, budget_s: float = 600.0, config_dir: str = "configs",
              command: str = "", variants: tuple[tuple[str, str], ...] = VARIANTS) -> dict:
    """Runs the asked sections (most important first, so a tight budget drops the ours-only rows)
    and returns the result that `speed_report.write` writes. `peers`, `peer_reasons`: what
    `speed_setup.load_peers` returns (none: ours alone)."""
    check_choices(sections, methods, variants)
    peers = peers or {}
    run = Run(setup, peers, budget_s=budget_s, config_dir=config_dir, variants=variants)
    load_start = timing.load_average()
    plan = [("train/rd4ad", "train", lambda: train_section(run, "rd4ad")),
            ("inference", "inference", lambda: inference_section(run)),
            ("aupro", "aupro", lambda: aupro_section(run)),
            ("evaluation", "evaluation", lambda: evaluation_section(run)),
            ("memory", "memory", lambda: speed_memory.memory_section(run)),
            ("variants", "variants", lambda: variants_section(run)),
            ("train/sk_rd4ad", "train", lambda: train_section(run, "sk_rd4ad")),
            ("train/rgpkd", "train", lambda: train_section(run, "rgpkd"))]
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
        "rows": [r.to_dict() for r in speed_report.sorted_rows(run.rows)], "skipped": run.skipped,
        "failed": run.failed,
        "seconds_per_call": run.raw, "extra": run.extra,
    }


def define_flags() -> None:
    """Only when run as a program: importing this module (tests, other tools) defines no flags."""
    flags.DEFINE_list("peers", ["anomalib"], f"peer implementations to compare with, any of {PEERS[:-1]}; "
                      "'none' runs ours alone (so does a missing anomalib, with a warning)")
    flags.DEFINE_string("official_dir", None, "with --peers=official: a checkout of the official RD4AD code "
                        "(git clone https://github.com/hq-deng/RD4AD)")
    flags.DEFINE_bool("tiny", False, "structure check only: resnet18, 64 px, batch 2, 1 repeat")
    flags.DEFINE_integer("warmup", None, "untimed rounds before timing (default: 1, tiny 0)")
    flags.DEFINE_integer("repeats", None, "timed rounds; rows report medians (default: 3, tiny 1)")
    flags.DEFINE_integer("eval_images", None, "test images of the end-to-end evaluation")
    flags.DEFINE_integer("aupro_images", None, "test images of the AU-PRO comparison")
    flags.DEFINE_list("method", list(METHODS), "our methods whose train step is timed "
                      "(RD4AD is also the one every other section uses)")
    flags.DEFINE_list("section", list(DEFAULT_SECTIONS), f"what to measure, any of {SECTIONS}")
    flags.DEFINE_list("variant", [f"{impl}:{dtype}" for impl, dtype in VARIANTS],
                      "conv_impl:compute_dtype pairs of the variants section")
    flags.DEFINE_string("config_dir", "configs", "folder of <method>.py configs (relative to the working directory)")
    flags.DEFINE_string("output_dir", os.path.join("benchmarks", "results"),
                        f"where {speed_report.JSON_FILE} and {speed_report.MARKDOWN_FILE} are written "
                        "(relative to the working directory)")
    flags.DEFINE_float("budget_s", 600.0, "a section that would start after this many seconds is skipped "
                       "(and listed as skipped)")
    flags.DEFINE_string("profile_dir", "", "if set, write a jax profiler trace of a few of our RD4AD train steps there")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    setup = setup_for(f.tiny, warmup=f.warmup, repeats=f.repeats, eval_images=f.eval_images,
                      aupro_images=f.aupro_images)
    variants = parse_variants(f.variant)
    try:
        check_choices(f.section, f.method, variants)
        peers, peer_reasons = load_peers(f.peers, f.official_dir)  # OfficialCodeError is a ValueError
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    result = benchmark(setup, sections=f.section, methods=f.method, peers=peers, peer_reasons=peer_reasons,
                       budget_s=f.budget_s, variants=variants,
                       config_dir=f.config_dir, command=" ".join(["python -m benchmarks.speed"] + sys.argv[1:]))
    print(speed_report.write(result, f.output_dir), flush=True)
    if result["failed"]:
        sys.exit(f"{len(result['failed'])} section(s) failed (their errors are logged above; the other "
                 f"sections' rows are in {f.output_dir}): " + "; ".join(result["failed"]))
    if f.profile_dir:
        write_profile(setup, f.config_dir, f.profile_dir)


if __name__ == "__main__":
    define_flags()
    app.run(main)
