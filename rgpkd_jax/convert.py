"""Command line: torchvision weights -> a teacher checkpoint; an official RD4AD checkpoint -> a workdir.

    python -m rgpkd_jax.convert --arch wide_resnet50_2 --download      # official torchvision V1 file
    python -m rgpkd_jax.convert --arch resnet18 --pth resnet18-f37072fd.pth [--output DIR]
    python -m rgpkd_jax.convert --official_rd4ad wres50_bottle.pth \\
        --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/official_bottle

Teacher checkpoints go by default into the cache that ``teacher.weights='imagenet'`` reads
(``$RGPKD_JAX_CACHE`` or ``~/.cache/rgpkd_jax``). ``.pth`` files are read without torch and
never run code from the file. The work is done by :mod:`rgpkd_jax.teacher` and
:mod:`rgpkd_jax.model_setup`; nothing imports this module.
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from rgpkd_jax import cli, config_files
from rgpkd_jax.models import resnet as resnet_lib

_ARCH = flags.DEFINE_enum("arch", None, list(resnet_lib.ARCHS), "Teacher architecture (torchvision weights).")
_PTH = flags.DEFINE_string("pth", None, "A torchvision .pth file to convert.")
_DOWNLOAD = flags.DEFINE_bool("download", False, "Download torchvision's ImageNet V1 weights (sha256 "
                              "checked) into the cache, then convert them.")
_OUTPUT = flags.DEFINE_string("output", None, "Checkpoint directory to write. Default: the cache that "
                              "teacher.weights='imagenet' reads ($RGPKD_JAX_CACHE or ~/.cache/rgpkd_jax).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing checkpoint directory.")
_OFFICIAL = flags.DEFINE_string("official_rd4ad", None, "An official RD4AD / SK-RD4AD checkpoint "
                                "({'bn','decoder'} .pth) to convert into --workdir, for --config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "With --official_rd4ad: the workdir to write.")
_CONFIG = config_files.DEFINE_config_file("config", "With --official_rd4ad: the run's config, "
                                          "e.g. configs/rd4ad.py:mvtec_ad/bottle.")


def _import_official(config, workdir: str, path: str) -> None:
    from rgpkd_jax import evaluate, model_setup  # the heavy part; --help stays fast

    if config is None:
        raise app.UsageError("--official_rd4ad needs --config configs/rd4ad.py:<dataset>/<category> "
                             "(or configs/sk_rd4ad.py) with the checkpoint's teacher arch")
    if not workdir:
        raise app.UsageError("--official_rd4ad needs --workdir: where the converted checkpoint goes")
    model = model_setup.import_official_rd4ad(config, workdir, path)
    evaluate.compute_threshold(model, config, workdir)
    print(f"Wrote {path} as the checkpoint of {workdir}. Evaluate it with: python -m rgpkd_jax.main "
          f"--config <the same config> --workdir {workdir} --mode eval")


def _convert_teacher(arch: str) -> None:
    from rgpkd_jax import teacher

    directory = teacher.convert_torchvision(arch, pth=_PTH.value, download=_DOWNLOAD.value,
                                            output=_OUTPUT.value, overwrite=_OVERWRITE.value)
    if directory is None:
        print(f"{_OUTPUT.value or teacher.imagenet_checkpoint_dir(arch)} exists; nothing to do "
              "(pass --overwrite to convert again).")
        return
    weights = "imagenet" if directory == teacher.imagenet_checkpoint_dir(arch) else str(directory)
    print(f"Wrote the {arch} teacher checkpoint to {directory}\n"
          f"Use it with: --config.teacher.arch={arch} --config.teacher.weights={weights}")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _OFFICIAL.value:
        _import_official(_CONFIG.value, _WORKDIR.value, _OFFICIAL.value)
    elif _ARCH.value is None:
        raise app.UsageError("--arch is required (or --official_rd4ad with --config and --workdir)")
    else:
        _convert_teacher(_ARCH.value)


if __name__ == "__main__":
    cli.run(main, compilation_cache=False)
