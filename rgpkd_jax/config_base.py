"""The config schema shared by every method, and the one place its layers are applied.

A config file ``configs/<method>.py`` says only what its method changes: its ``get_config(arg)``
returns ``build(method, arg, defaults=..., tiny=...)``. `build` applies, in this order, the schema's
defaults, the method's (``defaults(c)``, the one layer that may add keys, under ``model``), the
dataset and category of ``arg`` (``"<dataset>/<category>[,tiny]"``, e.g. ``mvtec_ad/bottle`` or
``synthetic/grid,tiny``), and with ``tiny`` the CPU smoke-run shrink (small images, few epochs;
never a result) and then the method's own ``tiny(c)``; then it locks the config, so a mistyped key,
in a later layer or in a ``--config.x.y=...`` override, is an error instead of a new key.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from rgpkd_jax.config_files import ConfigError

DEFAULT_DATASET = "mvtec_ad/bottle"
Layer = Callable[[ml_collections.ConfigDict], None]


def build(method: str, arg: str | None, *, defaults: Layer | None = None, tiny: Layer | None = None,
          default_dataset: str = DEFAULT_DATASET) -> ml_collections.ConfigDict:
    """``method``'s config for ``arg`` (``default_dataset`` when None), its layers applied in order
    (module docstring), locked."""
    dataset, category, options = parse_arg(arg or default_dataset)
    c = base_config(method)
    if defaults is not None:
        defaults(c)
    c.lock()
    c.dataset.name, c.dataset.category = dataset, category
    if "tiny" in options:
        shrink_to_tiny(c)
        if tiny is not None:
            tiny(c)
    return c


def parse_arg(arg: str) -> tuple[str, str, set[str]]:
    """Splits `"dataset/category,opt1,opt2"` into its parts (category: one, `all` or `a+b`: the
    unified setting, `rgpkd_jax.data.unified`)."""
    parts = arg.split(",")
    head, options = parts[0], {p.strip() for p in parts[1:] if p.strip()}
    if "/" not in head:
        raise ConfigError(
            f"config argument {arg!r} must look like 'dataset/category' (e.g. 'mvtec_ad/bottle'), "
            "optionally followed by ',tiny'")
    dataset, category = head.split("/", 1)
    unknown = options - {"tiny"}
    if unknown:
        raise ConfigError(f"unknown config option(s) {sorted(unknown)} in {arg!r}; known: ['tiny']")
    return dataset, category, options


def base_config(method: str) -> ml_collections.ConfigDict:
    """The schema with every method's defaults (unlocked: the method's layer comes next)."""
    c = ml_collections.ConfigDict()
    c.method = method
    c.seed = 0

    c.dataset = ml_collections.ConfigDict(dict(
        name="", category="",  # the dataset layer's; category: one, 'all' or 'a+b' (unified setting)
        # natural | balanced: how a unified run samples its categories (rgpkd_jax/data/unified.py)
        sampling="natural",
        data_dir="",      # TFDS data dir; "" = $RGPKD_JAX_DATA or ~/tensorflow_datasets
        manual_dir="",    # where the downloaded archive/folder lies, for datasets that need it
        image_size=256,
    ))
    c.data = ml_collections.ConfigDict(dict(
        num_workers=0,
        # The training split decoded and resized once per run, kept in host memory, when it fits
        # this many MiB and num_workers is 0; 0 decodes every batch (rgpkd_jax/data/pipeline.py).
        decoded_cache_mib=4096.0,
    ))

    c.teacher = ml_collections.ConfigDict(dict(
        arch="wide_resnet50_2",
        # 'imagenet' (converted torchvision V1 weights from the cache), 'random', or a path.
        weights="imagenet",
        # Fall back to a random teacher when ImageNet weights can't be had (the demo only).
        fallback_to_random=False,
    ))
    c.model = ml_collections.ConfigDict(dict(
        # float32 | bfloat16 | float64: the dtype convolutions and BN compute in. With bfloat16,
        # parameters, BN statistics, loss and maps stay float32; it is for GPU/TPU (on CPU it is
        # emulated and slower). float64 (tests; needs jax_enable_x64) makes everything float64.
        compute_dtype="float32",
        # auto | xla | cpu: how convs, BN and 2x2 deconvs compute (rgpkd_jax/models/conv_ops.py).
        # xla: the nnx/lax library layers (cuDNN on GPU); cpu: rewrites measured faster on
        # XLA:CPU; auto: cpu when JAX's default backend is the CPU, else xla. Same parameters
        # and values either way; the resolved choice is the model's `conv_impl` attribute.
        conv_impl="auto",
        # unbiased | biased: the batch variance that updates every BN's running variance.
        # unbiased (x n/(n-1)) is PyTorch's BatchNorm2d, so the official code's; biased is flax's.
        bn_running_var="unbiased",
        # none | decoder: recompute the student decoder blocks' activations in the backward pass
        # (same values; for GPU/TPU memory: XLA:CPU compiles the recomputation away;
        # rgpkd_jax/models/remat.py, measured in benchmarks/NOTES.md).
        remat="none",
    ))

    c.train = ml_collections.ConfigDict(dict(
        epochs=200,
        batch_size=16,            # global batch, split over all devices
        optimizer="adam",
        learning_rate=0.005,
        b1=0.5, b2=0.999, eps=1e-8,
        momentum=0.9,             # sgd only
        weight_decay=0.0,
        schedule="constant",      # constant | warmup_linear_decay | warmup_cosine
        warmup_epochs=0.0,
        checkpoint_every_steps=500,
        max_to_keep=2,
        log_every_steps=10,
        max_steps_this_run=0,     # >0: stop after this many steps (a time-limited job slot); rerun resumes
        # off | auto | host | device: compute the frozen teacher's features of each training image
        # once and reuse them every epoch (exact: no augmentation, frozen teacher; never in a
        # checkpoint). device: in device memory; host: host numpy, gathered per batch; auto: device
        # if it fits teacher_cache_budget_mib (per device), else host if it fits
        # teacher_cache_host_budget_mib, else off (rgpkd_jax/teacher_cache.py).
        teacher_cache="off",
        teacher_cache_budget_mib=2048.0,
        teacher_cache_host_budget_mib=8192.0,
    ))
    c.eval = ml_collections.ConfigDict(dict(
        batch_size=16,
        sigma=4.0,                 # Gaussian smoothing of the anomaly map (official: 4)
        combine="sum",             # how per-level maps are combined: sum (official) | product
        score="max",               # image score: max (official) | topk_mean
        topk=100,                  # pixels averaged when score='topk_mean'
        # -1: image scores as computed (RD4AD; SK-RD4AD's README run, --seg 1); d >= 0: rounded
        # to d decimals before image AUROC, as SK-RD4AD's default image-only evaluation (--seg 0: 3)
        image_score_decimals=-1,
        # The evaluation protocol (docs/protocol.md; recorded under `protocol` in eval_metrics.json):
        # masks are compared with the maps at dataset.image_size, resized bilinearly and a pixel
        # is defective when the resized mask (in [0, 1]) is > mask_threshold (official: 0.5; 0
        # keeps every pixel the resize touched, as some code does).
        mask_threshold=0.5,
        fpr_limit=0.3,             # AU-PRO integration limit (official MVTec: 0.3)
        rd4ad_per_image_aupro=True,  # also report the RD4AD-code variant (labelled as such)
        num_visualise=8,           # images per kind (good / defective) in the PNG sheet
        threshold_quantile=0.99,   # predict: decision threshold from normal training images
    ))
    c.distributed = False  # call jax.distributed.initialize() (many processes/hosts: docs/multihost.md)
    c.profile_dir = ""     # if set, write a jax profiler trace of train steps 3-5 there (TensorBoard/Perfetto)
    return c


def set_rd4ad_model(c: ml_collections.ConfigDict, *, skips: bool, consistency_rate: float) -> None:
    """The RD4AD / SK-RD4AD model block: SK-RD4AD is RD4AD with skips and the consistency loss."""
    c.model.skips = skips
    c.model.loss = "cosine"          # cosine (official; SK-RD4AD --L2 0) | mse (1) | mix (2)
    c.model.consistency_rate = consistency_rate
    # fixed (official: resize to 64 and 32 whatever the image size) | per_level (each level's size)
    c.model.consistency_sizes = "fixed"
    c.model.include_unused_conv4 = False


def shrink_to_tiny(c: ml_collections.ConfigDict) -> None:
    """A CPU smoke run: small images and teacher, a few epochs. Never a result."""
    c.dataset.image_size = 64
    c.teacher.arch = "resnet18"
    c.train.epochs = 2
    c.train.batch_size = 8
    c.train.checkpoint_every_steps = 10
    c.train.log_every_steps = 1
    c.eval.batch_size = 16
    c.eval.sigma = 1.0
    c.eval.num_visualise = 4
