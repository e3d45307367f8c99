"""Speed and memory of rgpkd_jax against PyTorch peers, as ratios from one run.

    python -m benchmarks.speed                      # full size; with the anomalib peer if installed
    python -m benchmarks.speed --peers=anomalib,official --official_dir=PATH
                                                    # also the official RD4AD code (PATH: a checkout of
                                                    # github.com/hq-deng/RD4AD; never vendored, not in CI)
    python -m benchmarks.speed --peers=none         # ours alone
    python -m benchmarks.speed --tiny               # structure check: resnet18, 64 px, batch 2, 1 repeat

The peers are anomalib's ReverseDistillation (`anomalib_peer`) and the official RD4AD code
(`official_peer`). All implementations run in one process on the same inputs (random
weights, random images), in interleaved rounds (A B A B ...) after untimed warm-up rounds; every
number is a median over the rounds, and each row's ratio (ours / peer) is taken between medians of
the same rounds, so load from other processes falls on both sides alike. The machine's load average
is recorded before and after each section. Peak memory is measured in a fresh subprocess per
implementation and task (`memory_probe`).

Rows (images/s unless said otherwise; the peer is anomalib's. With --peers including official,
train/rd4ad, infer/batch<B> and memory/* also come as `<row>_vs_official`, against the official
code timed in the same rounds; the targets are against anomalib):
  train/<method>          one train step (forward, loss, backward, Adam), batch 16, 256 px, for
                          every registered method in --methods;
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
  variant/*               (--sections=variants) RD4AD train step and batch-16 inference for each
                          model.conv_impl (xla: plain lax/nnx ops; cpu: the XLA:CPU rewrites) and
                          model.compute_dtype (float32, bfloat16), interleaved with the peer.
Train and inference rows also carry a `ceiling`: the ratio ours / peer if our computation ran at
the best matmul rate sampled in the same rounds; a target above it cannot be met on this machine.
Writes `speed.json` and `speed.md` into --output_dir. `--profile_dir` also writes a jax profiler
trace of a few of our train steps (for TensorBoard / Perfetto).
"""

from __future__ import annotations

import sys

from absl import flags

from benchmarks import common_flags
from benchmarks.speed import report, sections, sizes
from benchmarks.speed.peers import PEERS, load_peers
from benchmarks.speed.run import VARIANTS
from rgpkd_jax import cli


def define_flags() -> None:
    flags.DEFINE_list("peers", ["anomalib"], f"peer implementations to compare with, any of {PEERS[:-1]}; "
                      "'none' runs ours alone (so does a missing anomalib, with a warning)")
    flags.DEFINE_string("official_dir", None, "with --peers=official: a checkout of the official RD4AD code "
                        "(git clone https://github.com/hq-deng/RD4AD)")
    flags.DEFINE_bool("tiny", False, "structure check only: resnet18, 64 px, batch 2, 1 repeat")
    flags.DEFINE_integer("warmup", None, "untimed rounds before timing (default: 1, tiny 0)")
    flags.DEFINE_integer("repeats", None, "timed rounds; rows report medians (default: 3, tiny 1)")
    flags.DEFINE_integer("eval_images", None, "test images of the end-to-end evaluation")
    flags.DEFINE_integer("aupro_images", None, "test images of the AU-PRO comparison")
    common_flags.define_methods(f"whose train step is timed ({sizes.PEER_METHOD} is also the one every other "
                                "section measures)")
    flags.DEFINE_list("sections", list(sections.DEFAULT_SECTIONS), f"what to measure, any of {sections.SECTIONS}")
    flags.DEFINE_list("variants", [f"{impl}:{dtype}" for impl, dtype in VARIANTS],
                      "conv_impl:compute_dtype pairs of the variants section")
    common_flags.define_config_dir()
    common_flags.define_overrides()
    common_flags.define_output_dir("benchmarks/results", f"{report.JSON_FILE} and {report.MARKDOWN_FILE}")
    flags.DEFINE_float("budget_s", 600.0, "a section that would start after this many seconds is skipped "
                       "(and listed as skipped)")
    flags.DEFINE_string("profile_dir", "", "if set, write a jax profiler trace of a few of our RD4AD train steps there")


def main(argv) -> None:
    common_flags.check_arguments(argv)
    f = flags.FLAGS
    setup = sizes.setup_for(f.tiny, warmup=f.warmup, repeats=f.repeats, eval_images=f.eval_images,
                            aupro_images=f.aupro_images)
    variants = sections.parse_variants(f.variants)
    sections.check_choices(f.sections, f.methods, variants)
    peers, peer_reasons = load_peers(f.peers, f.official_dir)  # OfficialCodeError is a ValueError
    result = sections.benchmark(setup, sections=f.sections, methods=f.methods, peers=peers,
                                peer_reasons=peer_reasons, budget_s=f.budget_s, variants=variants,
                                config_dir=f.config_dir, overrides=f.overrides,
                                command=" ".join(["python -m benchmarks.speed"] + sys.argv[1:]))
    print(report.write(result, f.output_dir), flush=True)
    if result["failed"]:
        sys.exit(f"error: {len(result['failed'])} section(s) failed (their errors are logged above; the other "
                 f"sections' rows are in {f.output_dir}): " + "; ".join(result["failed"]))
    if f.profile_dir:
        sections.write_profile(setup, f.config_dir, f.profile_dir, f.overrides)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
