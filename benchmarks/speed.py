"""Speed and memory of rgpkd_jax against anomalib's ReverseDistillation, as ratios from one run.

    python -m benchmarks.speed                      # full size; with the anomalib peer if installed
    python -m benchmarks.speed --peers=none         # ours alone
    python -m benchmarks.speed --tiny               # structure check: resnet18, 64 px, batch 2, 1 repeat

Both implementations run in one process on the same inputs (random weights, random images), in
interleaved rounds (A B A B ...) after untimed warm-up rounds; every number is a median over the
rounds, and each row's ratio (ours / peer) is taken between medians of the same rounds, so load
from other processes falls on both sides alike. The machine's load average is recorded before
and after each section. Peak memory is measured in a fresh subprocess per implementation and task.

Rows (images/s unless said otherwise):
  train/<method>          one train step (forward, loss, backward, Adam), batch 16, 256 px;
  train/rd4ad_fraction_of_peak  XLA's flop count of our RD4AD train step / its median time,
                          over the best fp32 matmul rate sampled in the same rounds;
  infer/batch<B>          forward + anomaly map + score, maps back on the host;
  eval/end_to_end         forward + maps over a test set, image AUROC, pixel AUROC, AU-PRO;
  aupro/*                 AU-PRO alone on the same maps against the per-image threshold loop as
                          RD4AD's code computes it (REFERENCE_SPEC §2.6; regions relabelled at every
                          threshold), the same loop labelling once per image, and anomalib's AUPRO;
  memory/*                peak resident memory (MiB), beyond the process's RSS once its libraries
                          are imported, and of the whole process.
Train and inference rows also carry a `ceiling`: the ratio ours / peer if our computation ran at
the best matmul rate sampled in the same rounds; a target above it cannot be met on this machine.
Writes `speed.json` and `speed.md` into --output_dir. `--profile_dir` also writes a jax profiler
trace of a few of our train steps (for TensorBoard / Perfetto).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
from absl import app, flags, logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ("anomalib", "none")
SECTIONS = ("train", "inference", "evaluation", "aupro", "memory")
METHODS = ("rd4ad", "sk_rd4ad", "rgpkd")
JSON_FILE, MARKDOWN_FILE = "speed.json", "speed.md"

_PEERS = flags.DEFINE_enum("peers", "anomalib", PEERS, "peer implementation to compare with; "
                           "'none' runs ours alone (also the fallback when anomalib is not installed)")
_TINY = flags.DEFINE_bool("tiny", False, "structure check only: resnet18, 64 px, batch 2, 1 repeat")
_WARMUP = flags.DEFINE_integer("warmup", None, "untimed rounds before timing (default: 1, tiny 0)")
_REPEATS = flags.DEFINE_integer("repeats", None, "timed rounds; rows report medians (default: 3, tiny 1)")
_EVAL_IMAGES = flags.DEFINE_integer("eval_images", None, "test images of the end-to-end evaluation")
_AUPRO_IMAGES = flags.DEFINE_integer("aupro_images", None, "test images of the AU-PRO comparison")
_METHODS = flags.DEFINE_list("methods", list(METHODS), "our methods whose train step is timed "
                             "(RD4AD is also the one every other section uses)")
_SECTIONS = flags.DEFINE_list("sections", list(SECTIONS), f"what to measure, any of {SECTIONS}")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", os.path.join(REPO, "benchmarks", "results"),
                                  f"where {JSON_FILE} and {MARKDOWN_FILE} are written")
_BUDGET_S = flags.DEFINE_float("budget_s", 600.0, "a section that would start after this many "
                               "seconds is skipped (and listed as skipped)")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", "", "if set, write a jax profiler trace of a few "
                                   "of our RD4AD train steps there")
_PROBE = flags.DEFINE_string("probe", "", "internal: '<task>:<impl>' measures one peak-memory probe "
                             "in this process and prints it as JSON")


@dataclasses.dataclass(frozen=True)
class Setup:
    name: str                  # full | tiny
    arch: str                  # teacher of RD4AD / SK-RD4AD (RGPKD keeps its config's)
    image_size: int
    train_batch: int
    infer_batches: tuple[int, ...]
    eval_batch: int
    eval_images: int
    aupro_images: int
    bank_entries: int          # RGPKD prompt bank size
    memory_subprocess: bool    # a fresh process per memory probe (tiny: in this process, structure only)
    warmup: int
    repeats: int


FULL = Setup("full", "wide_resnet50_2", 256, 16, (1, 16), 16, 32, 32, 64, True, warmup=1, repeats=3)
TINY = Setup("tiny", "resnet18", 64, 2, (1, 2), 2, 4, 4, 4, False, warmup=0, repeats=1)
TARGETS = {  # row -> (comparison, ratio) from the issue; ratio = ours / peer
    "train/rd4ad": (">=", 1.5), "infer/batch1": (">=", 1.5), "infer/batch16": (">=", 2.0),
    "aupro/rd4ad_per_image_vs_threshold_loop": (">=", 100.0),
    "memory/train": ("<=", 1.0), "train/rd4ad_fraction_of_peak": (">=", 0.5),
}


@dataclasses.dataclass
class Row:
    name: str
    unit: str
    ours: float | None
    peer: float | None
    peer_label: str
    note: str = ""
    # The ratio ours / peer if our computation ran at the best matmul rate sampled in its rounds:
    # the peer's time over (our XLA flop count / peak). A target above it cannot be met here.
    ceiling: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ours is None or not self.peer:
            return None
        return self.ours / self.peer

    @property
    def target(self) -> str | None:
        if self.name not in TARGETS:
            return None
        comparison, value = TARGETS[self.name]
        return f"{comparison} {value:g}"

    @property
    def met(self) -> bool | None:
        if self.name not in TARGETS or self.ratio is None:
            return None
        comparison, value = TARGETS[self.name]
        return self.ratio >= value if comparison == ">=" else self.ratio <= value

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ratio": self.ratio, "target": self.target, "met": self.met}


# ----------------------------------------------------------------------------- timing


def _block(out) -> None:
    jax.block_until_ready(out)  # leaves that are not jax arrays pass through


def interleaved(cases: dict[str, Callable[[], object]], *, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each case, measured in rounds A B A B ... after `warmup` untimed rounds.

    Each call's result is blocked on before the clock stops, so asynchronous dispatch is counted.
    """
    for _ in range(warmup):
        for fn in cases.values():
            _block(fn())
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            _block(fn())
            times[name].append(time.perf_counter() - start)
    return times


def _median(seconds: list[float]) -> float:
    return statistics.median(seconds)


def _rate(items: int, seconds: list[float]) -> float:
    return items / _median(seconds)


class MatmulPeak:
    """The machine's attainable fp32 matmul rate for XLA (GFLOP/s), sampled once per round.

    Each call is one sample: the median of 3 back-to-back 2048^2 matmuls after an untimed one.
    The first matmul after a large train step runs at a fifth of the rate (measured: 42 against
    190-200 GFLOP/s; the step's memory is being released), which is not the machine's rate.
    """

    def __init__(self, size: int = 2048, calls: int = 3):
        self.a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
        self.b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
        self.f = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
        self.flops, self.calls = 2 * size ** 3, calls
        self.samples: list[float] = []

    def __call__(self) -> None:
        _block(self.f(self.a, self.b))
        seconds = []
        for _ in range(self.calls):
            start = time.perf_counter()
            _block(self.f(self.a, self.b))
            seconds.append(time.perf_counter() - start)
        self.samples.append(self.flops / _median(seconds) / 1e9)

    @property
    def gflops(self) -> float:
        """The best sample: ceilings are upper bounds, so they take the best rate seen (samples
        after our train step run at 110-120 against 200 GFLOP/s in the warm-up round)."""
        return max(self.samples)


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ----------------------------------------------------------------------------- our side


def load_config(method: str, setup: Setup):
    """`configs/<method>.py` at the benchmark's size, with a random teacher (timing only)."""
    path = os.path.join(REPO, "configs", f"{method}.py")
    spec = importlib.util.spec_from_file_location(f"speed_config_{method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(f"synthetic/speed{',tiny' if setup.name == 'tiny' else ''}")
    config.teacher.weights = "random"
    if method != "rgpkd":
        config.teacher.arch = setup.arch
    config.dataset.image_size = setup.image_size
    config.train.batch_size = setup.train_batch
    config.eval.batch_size = setup.eval_batch
    return config


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, size, size, 3), dtype=np.float32)


def build_ours(config, setup: Setup):
    from flax import nnx

    from rgpkd_jax.models import build_model
    model = build_model(config, nnx.Rngs(config.seed))
    if hasattr(model, "build_bank"):  # RGPKD: a prompt bank of random training images
        n = setup.bank_entries
        model.build_bank([{"image": random_images(n, setup.image_size, seed=1),
                           "index": np.arange(n, dtype=np.int32)}])
    return model


class OursTrain:
    """Our jitted train step (`rgpkd_jax.train.make_train_step`) on one device-resident batch."""

    def __init__(self, config, setup: Setup, images: np.ndarray):
        import optax

        from rgpkd_jax import train
        model = build_ours(config, setup)
        graphdef, self.state = train.split_train_state(
            model, config.train, optax.constant_schedule(config.train.learning_rate))
        self.step = train.make_train_step(graphdef)
        self.batch = {"image": jax.device_put(images),
                      "index": jax.device_put(np.arange(len(images), dtype=np.int32))}

    def __call__(self):
        self.state, metrics = self.step(self.state, self.batch)
        return metrics["loss"]

    @functools.cached_property
    def _compiled(self):
        """The step compiled once for both analyses (a WRN50 step takes ~40 s to compile on CPU)."""
        return self.step.lower(self.state, self.batch).compile()

    def flops(self) -> float | None:
        return _flops(self._compiled)

    def memory(self) -> dict[str, float]:
        """XLA's buffer sizes for one step (MiB): the state it takes and its temporaries."""
        stats = self._compiled.memory_analysis()
        return {"arguments_mib": stats.argument_size_in_bytes / 2**20,
                "temporaries_mib": stats.temp_size_in_bytes / 2**20}


class OursInference:
    """Forward + anomaly map + score in one jit (`rgpkd_jax.evaluate.make_map_fn`), maps to host."""

    def __init__(self, model, config):
        from rgpkd_jax import evaluate
        self.fn, self.state = evaluate.make_map_fn(model, config)

    def __call__(self, images: np.ndarray):
        maps, scores = self.fn(self.state, jax.device_put(images))
        return np.asarray(maps), np.asarray(scores)

    def flops(self, images: np.ndarray) -> float | None:
        return _flops(self.fn.lower(self.state, images).compile())


def ours_evaluate(runner, images, masks, labels) -> dict:
    """What `evaluate_model` does minus files: maps of the test set, then the three metrics."""
    from rgpkd_jax.metrics import summary
    maps, scores = runner(images)
    return summary.compute_metrics(maps, masks, labels, scores=scores, per_image_aupro=False)


# ----------------------------------------------------------------------------- AU-PRO reference


def threshold_loop_aupro(maps: np.ndarray, masks: np.ndarray, *, fpr_limit: float = 0.3,
                         num_thresholds: int = 200, label_once: bool = False) -> float:
    """RD4AD's per-image AUPRO written the way its `compute_pro` computes it (REFERENCE_SPEC §2.6).

    Per defective image: for each of 200 thresholds from the map's min to max, binarise the map;
    label the ground truth's 8-connected regions and, region by region (its pixel coordinates, as
    skimage's `regionprops` gives them), take the fraction above the threshold; PRO is their
    mean, FPR the fraction of the image's normal pixels above it. Keep FPR < limit, divide FPR by
    its largest kept value, trapezoid; mean over images. The official code labels the regions
    again at every threshold; `label_once=True` hoists that out of the loop (a kinder baseline).
    """
    def regions_of(mask):
        labelled, _ = scipy.ndimage.label(mask, structure=np.ones((3, 3), bool))
        return [np.argwhere(labelled[box] == k) + [box[0].start, box[1].start]
                for k, box in enumerate(scipy.ndimage.find_objects(labelled), start=1)]

    values = []
    for amap, mask in zip(maps, masks.astype(bool)):
        if not mask.any():
            continue
        regions = regions_of(mask) if label_once else None
        normal = ~mask
        low, high = amap.min(), amap.max()
        pros, fprs = [], []
        for threshold in np.arange(low, high, (high - low) / num_thresholds):
            binary = amap > threshold
            pros.append(np.mean([binary[c[:, 0], c[:, 1]].sum() / len(c)
                                 for c in (regions if label_once else regions_of(mask))]))
            fprs.append((binary & normal).sum() / normal.sum())
        fprs, pros = np.asarray(fprs), np.asarray(pros)
        keep = fprs < fpr_limit
        if keep.sum() >= 2 and fprs[keep].max() > 0:
            values.append(abs(np.trapezoid(pros[keep], fprs[keep] / fprs[keep].max())))
    return float(np.mean(values))


# ----------------------------------------------------------------------------- peer


def load_peer(name: str):
    """The peer module, or (None, reason) when it was not asked for or cannot run here."""
    if name == "none":
        return None, "not requested (--peers=none)"
    from benchmarks import peers
    missing = peers.missing_packages()
    if missing:
        return None, (f"anomalib peer not installed (missing: {', '.join(missing)}); ran ours alone. "
                      f"Install: {peers.INSTALL_HINT}")
    return peers, ""


# ----------------------------------------------------------------------------- sections


class Run:
    """Collects rows, raw timings, load averages and skipped sections of one benchmark run."""

    def __init__(self, setup: Setup, peer, peer_reason: str, budget_s: float):
        self.setup, self.peer, self.peer_reason = setup, peer, peer_reason
        self.peer_label = f"anomalib {peer.version_info()['anomalib']}" if peer else "(no peer)"
        self.rows: list[Row] = []
        self.raw: dict[str, dict] = {}
        self.load: dict[str, dict] = {}
        self.skipped: list[str] = []
        self.extra: dict[str, object] = {}
        self.start, self.budget_s = time.perf_counter(), budget_s

    def section(self, name: str, fn: Callable[[], None]) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed > self.budget_s:
            logging.warning("skipping %s: %.0f s elapsed, budget %.0f s", name, elapsed, self.budget_s)
            self.skipped.append(f"{name} (budget: {elapsed:.0f} s of {self.budget_s:.0f} s used)")
            return
        logging.info("section %s (load %s)", name, _load_average())
        before, t0 = _load_average(), time.perf_counter()
        fn()
        self.load[name] = {"before": before, "after": _load_average(),
                           "seconds": round(time.perf_counter() - t0, 1)}

    def timed(self, key: str, cases: dict, warmup: int | None = None) -> dict[str, list[float]]:
        times = interleaved(cases, warmup=self.setup.warmup if warmup is None else warmup,
                            repeats=self.setup.repeats)
        self.raw[key] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}
        logging.info("%s: %s", key, {n: f"{_median(t):.3f}s" for n, t in times.items()})
        return times


def _flops(compiled) -> float | None:
    """XLA's flop count of a compiled program (its cost analysis)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def _ceiling(flops: float | None, peak_gflops: float, peer_seconds: list[float] | None) -> float | None:
    if not flops or not peer_seconds:
        return None
    return _median(peer_seconds) / (flops / 1e9 / peak_gflops)


def train_section(run: Run, method: str) -> None:
    setup = run.setup
    config = load_config(method, setup)
    images = random_images(setup.train_batch, setup.image_size)
    ours = OursTrain(config, setup, images)
    cases = {"ours": ours}
    peer = None
    if method == "rd4ad":
        matmul = MatmulPeak()
        cases["matmul"] = matmul
        if run.peer:
            peer = run.peer.ReverseDistillationPeer(setup.arch, setup.image_size)
            peer_batch = peer.prepare(images)
            cases["peer"] = lambda: peer.train_step(peer_batch)
    times = run.timed(f"train/{method}", cases)
    row = Row(f"train/{method}", "images/s", _rate(setup.train_batch, times["ours"]),
              _rate(setup.train_batch, times["peer"]) if peer else None,
              run.peer_label if peer else "(no peer for this method)")
    run.rows.append(row)
    if method != "rd4ad":
        return
    flops = ours.flops()
    peak = matmul.gflops
    row.ceiling = _ceiling(flops, peak, times.get("peer"))
    run.extra["rd4ad_train_step"] = {
        "flops_per_step": flops, "matmul_gflops_best": peak,
        "matmul_gflops_samples": matmul.samples,
        "xla_memory": ours.memory()}
    achieved = flops / _median(times["ours"]) / 1e9 if flops else None
    run.rows.append(Row("train/rd4ad_fraction_of_peak", "GFLOP/s", achieved, peak,
                        "best fp32 matmul (XLA, 2048^2) of the same rounds",
                        note=f"{flops / 1e9:.0f} GFLOP per step (XLA cost analysis)" if flops else
                        "XLA reported no flop count"))
    if peer:
        peer_flops = peer.train_flops(peer_batch)
        run.extra["rd4ad_train_step"]["peer_flops_per_step"] = peer_flops
        row.note = (f"FLOPs per step: ours {flops / 1e9:.0f} G, peer {peer_flops / 1e9:.0f} G "
                    "(anomalib's OCE is narrower)") if flops and peer_flops else ""


def inference_section(run: Run) -> None:
    setup = run.setup
    config = load_config("rd4ad", setup)
    ours = OursInference(build_ours(config, setup), config)
    peer = run.peer.ReverseDistillationPeer(setup.arch, setup.image_size) if run.peer else None
    for batch_size in setup.infer_batches:
        matmul = MatmulPeak()
        images = random_images(batch_size, setup.image_size, seed=batch_size)
        cases = {"ours": lambda: ours(images), "matmul": matmul}
        if peer:
            peer_batch = peer.prepare(images)
            cases["peer"] = lambda: peer.maps_and_scores(peer_batch)
        times = run.timed(f"infer/batch{batch_size}", cases)
        peak = matmul.gflops
        run.extra[f"infer_batch{batch_size}_matmul_gflops_samples"] = matmul.samples
        run.rows.append(Row(f"infer/batch{_full_batch_name(setup, batch_size)}", "images/s",
                            _rate(batch_size, times["ours"]),
                            _rate(batch_size, times["peer"]) if peer else None, run.peer_label,
                            note=f"batch {batch_size}",
                            ceiling=_ceiling(ours.flops(images), peak, times.get("peer"))))


def _full_batch_name(setup: Setup, batch_size: int) -> int:
    """Rows are named after the full-size batch (1 or 16) so tiny and full tables line up."""
    return FULL.infer_batches[setup.infer_batches.index(batch_size)]


def _test_set(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps-independent ground truth: a third good images, the rest with 1-3 elliptic defects."""
    from benchmarks.aupro_timing import make_test_set
    maps, masks = make_test_set(n, size, seed)
    labels = masks.reshape(n, -1).max(axis=1).astype(np.int32)
    return maps, masks, labels


def evaluation_section(run: Run) -> None:
    from rgpkd_jax import evaluate
    setup = run.setup
    config = load_config("rd4ad", setup)
    n = _EVAL_IMAGES.value or setup.eval_images
    _, masks, labels = _test_set(n, setup.image_size)
    images = random_images(n, setup.image_size, seed=7)
    runner = evaluate.MapRunner(build_ours(config, setup), config)
    cases = {"ours": lambda: ours_evaluate(runner, images, masks, labels)}
    if run.peer:
        peer = run.peer.ReverseDistillationPeer(setup.arch, setup.image_size)
        cases["peer"] = lambda: peer.evaluate(images, masks, labels, setup.eval_batch)
    times = run.timed("eval/end_to_end", cases)
    run.rows.append(Row("eval/end_to_end", "images/s", _rate(n, times["ours"]),
                        _rate(n, times["peer"]) if run.peer else None, run.peer_label,
                        note=f"{n} images, batch {setup.eval_batch}; image AUROC, pixel AUROC, AU-PRO"))


def aupro_section(run: Run) -> None:
    from rgpkd_jax.metrics import aupro
    setup = run.setup
    n = _AUPRO_IMAGES.value or setup.aupro_images
    maps, masks, _ = _test_set(n, setup.image_size, seed=n)
    values = {}

    def keep(name, fn):
        def call():
            values[name] = fn()
        return call

    cases = {"per_image": keep("per_image", lambda: aupro.aupro_rd4ad_per_image(maps, masks).mean),
             "official": keep("official", lambda: aupro.aupro(maps, masks)),
             "threshold_loop": keep("threshold_loop", lambda: threshold_loop_aupro(maps, masks)),
             "threshold_loop_label_once": keep("threshold_loop_label_once", lambda: threshold_loop_aupro(
                 maps, masks, label_once=True))}
    if run.peer:
        cases["anomalib"] = keep("anomalib", lambda: run.peer.anomalib_aupro(maps, masks))
    times = run.timed("aupro", cases, warmup=0)
    run.extra["aupro_values"] = values
    agree = max(abs(values["per_image"] - values[loop]) for loop in ("threshold_loop", "threshold_loop_label_once"))
    loop_rate = _rate(n, times["threshold_loop"])
    run.rows.append(Row("aupro/rd4ad_per_image_vs_threshold_loop", "images/s",
                        _rate(n, times["per_image"]), loop_rate, "threshold loop as coded (§2.6)",
                        note=f"{n} maps; same metric, |difference| {agree:.1e}"))
    run.rows.append(Row("aupro/rd4ad_per_image_vs_loop_labelled_once", "images/s",
                        _rate(n, times["per_image"]), _rate(n, times["threshold_loop_label_once"]),
                        "threshold loop, regions labelled once per image",
                        note="a kinder baseline than the official code"))
    run.rows.append(Row("aupro/official_vs_threshold_loop", "images/s", _rate(n, times["official"]),
                        loop_rate, "threshold loop as coded (§2.6)",
                        note="a different metric (official, pooled, exact) against the per-image loop"))
    if run.peer:
        run.rows.append(Row("aupro/official_vs_anomalib", "images/s", _rate(n, times["official"]),
                            _rate(n, times["anomalib"]), run.peer_label,
                            note=f"ours {values['official']:.4f}, anomalib {values['anomalib']:.4f}"))


def memory_section(run: Run) -> None:
    impls = ["ours"] + (["peer"] if run.peer else [])
    results = {}
    for task in ("train", "infer"):
        for impl in impls:  # interleaved: ours, peer, ours, peer
            spec = f"{task}:{impl}"
            results[task, impl] = _run_probe(spec) if run.setup.memory_subprocess else probe(spec, run.setup)
    run.extra["memory_probes"] = {f"{t}:{i}": r for (t, i), r in results.items()}
    for task in ("train", "infer"):
        ours, peer = results[task, "ours"], results.get((task, "peer"))
        what = (f"train step, batch {run.setup.train_batch}" if task == "train"
                else f"inference, batch {max(run.setup.infer_batches)}")
        run.rows.append(Row(f"memory/{task}", "MiB", ours["beyond_imports_mib"],
                            peer["beyond_imports_mib"] if peer else None, run.peer_label,
                            note=f"{what}; peak RSS minus RSS after imports"))
        run.rows.append(Row(f"memory/{task}_process", "MiB", ours["peak_mib"],
                            peer["peak_mib"] if peer else None, run.peer_label,
                            note=f"{what}; whole-process peak RSS"))


def _run_probe(spec: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.speed", f"--probe={spec}",
               f"--tiny={_TINY.value}", f"--peers={_PEERS.value}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory probe {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    across fork + exec, so a probe started by a large benchmark process would report its parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    raise RuntimeError("no VmHWM in /proc/self/status; peak memory needs Linux")


def probe(spec: str, setup: Setup) -> dict:
    """Peak memory of one task (two calls: the first compiles) in this fresh process."""
    task, impl = spec.split(":")
    if impl == "peer":
        peer, reason = load_peer(_PEERS.value)
        if peer is None:
            raise RuntimeError(reason)
        peer.import_all()
    else:
        from rgpkd_jax import evaluate, train  # noqa: F401  (imports count in the baseline)
    after_imports = _rss_mib()
    batch = setup.train_batch if task == "train" else max(setup.infer_batches)
    images = random_images(batch, setup.image_size)
    if impl == "peer":
        model = peer.ReverseDistillationPeer(setup.arch, setup.image_size)
        prepared = model.prepare(images)
        call = (lambda: model.train_step(prepared)) if task == "train" else (
            lambda: model.maps_and_scores(prepared))
    else:
        config = load_config("rd4ad", setup)
        call = OursTrain(config, setup, images) if task == "train" else (
            lambda f=OursInference(build_ours(config, setup), config): f(images))
    for _ in range(2):
        _block(call())
    peak = _peak_rss_mib()
    return {"task": task, "impl": impl, "after_imports_mib": round(after_imports, 1),
            "peak_mib": round(peak, 1), "beyond_imports_mib": round(peak - after_imports, 1)}


# ----------------------------------------------------------------------------- outputs


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def to_markdown(result: dict) -> str:
    lines = [f"# `python -m benchmarks.speed` ({result['setup_name']})", "",
             f"{result['device']}; jax {result['versions']['jax']}; peer: {result['peer']['label']}"
             + (f" ({result['peer']['reason']})" if result['peer']['reason'] else ""),
             f"medians of {result['setup']['repeats']} interleaved rounds after "
             f"{result['setup']['warmup']} warm-up; load average at start {result['load_average_start']}",
             "", "| row | unit | ours | peer | peer is | ours / peer | target | met | ceiling | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        lines.append(f"| {row['name']} | {row['unit']} | {_fmt(row['ours'])} | {_fmt(row['peer'])} | "
                     f"{row['peer_label']} | {_fmt(row['ratio'])} | {row['target'] or ''} | {met} | "
                     f"{_fmt(row['ceiling']) if row['ceiling'] else ''} | {row['note']} |")
    lines += ["", "ceiling: ours / peer if our computation ran at the best fp32 matmul rate sampled in "
              "the same rounds (XLA's flop count / that rate, against the peer's time); a target above "
              "it cannot be met on this machine."]
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_profile(setup: Setup, profile_dir: str, steps: int = 3) -> None:
    """A jax profiler trace of `steps` of our RD4AD train steps (compiled before the trace)."""
    train_fn = OursTrain(load_config("rd4ad", setup), setup, random_images(setup.train_batch, setup.image_size))
    _block(train_fn())
    with jax.profiler.trace(profile_dir):
        for _ in range(steps):
            _block(train_fn())
    logging.info("profiler trace written to %s", profile_dir)


def benchmark(setup: Setup, sections: list[str], methods: list[str]) -> dict:
    for flag, given, known in (("--sections", sections, SECTIONS), ("--methods", methods, METHODS)):
        if set(given) - set(known):
            raise app.UsageError(f"{flag}: unknown {sorted(set(given) - set(known))}; choose from {known}")
    peer, reason = load_peer(_PEERS.value)
    if reason and _PEERS.value != "none":
        logging.warning("%s", reason)
    run = Run(setup, peer, reason, _BUDGET_S.value)
    load_start = _load_average()
    # Most important first, so a tight budget drops the ours-only rows.
    plan = [("train/rd4ad", "train", lambda: train_section(run, "rd4ad")),
            ("inference", "inference", lambda: inference_section(run)),
            ("aupro", "aupro", lambda: aupro_section(run)),
            ("evaluation", "evaluation", lambda: evaluation_section(run)),
            ("memory", "memory", lambda: memory_section(run)),
            ("train/sk_rd4ad", "train", lambda: train_section(run, "sk_rd4ad")),
            ("train/rgpkd", "train", lambda: train_section(run, "rgpkd"))]
    for name, kind, fn in plan:
        if kind in sections and (kind != "train" or name.split("/")[1] in methods):
            run.section(name, fn)
    order = {name: i for i, name in enumerate(
        ["train/rd4ad", "train/sk_rd4ad", "train/rgpkd", "train/rd4ad_fraction_of_peak", "infer/batch1",
         "infer/batch16", "eval/end_to_end", "aupro/rd4ad_per_image_vs_threshold_loop",
         "aupro/rd4ad_per_image_vs_loop_labelled_once", "aupro/official_vs_threshold_loop", "aupro/official_vs_anomalib", "memory/train",
         "memory/train_process", "memory/infer", "memory/infer_process"])}
    rows = sorted(run.rows, key=lambda r: order.get(r.name, len(order)))
    return {
        "setup_name": setup.name, "setup": dataclasses.asdict(setup),
        "command": " ".join(["python -m benchmarks.speed"] + sys.argv[1:]),
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()} ({platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} CPUs)",
        "versions": {"jax": jax.__version__, "python": platform.python_version(),
                     **(peer.version_info() if peer else {})},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "peer": {"label": run.peer_label, "reason": reason},
        "load_average_start": load_start, "load_average_end": _load_average(),
        "load_average_per_section": run.load, "elapsed_s": round(time.perf_counter() - run.start, 1),
        "rows": [r.to_dict() for r in rows], "skipped": run.skipped,
        "seconds_per_call": run.raw, "extra": run.extra,
    }


def main(argv) -> None:
    del argv
    setup = TINY if _TINY.value else FULL
    setup = dataclasses.replace(setup, **{k: v for k, v in (("warmup", _WARMUP.value),
                                                            ("repeats", _REPEATS.value)) if v is not None})
    if _PROBE.value:
        print(json.dumps(probe(_PROBE.value, setup)), flush=True)
        return
    result = benchmark(setup, _SECTIONS.value, _METHODS.value)
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    _write(os.path.join(_OUTPUT_DIR.value, JSON_FILE), json.dumps(result, indent=2, default=str) + "\n")
    markdown = to_markdown(result)
    _write(os.path.join(_OUTPUT_DIR.value, MARKDOWN_FILE), markdown)
    print(markdown, flush=True)
    if _PROFILE_DIR.value:
        write_profile(setup, _PROFILE_DIR.value)


if __name__ == "__main__":
    app.run(main)
