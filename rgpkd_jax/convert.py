"""Convert PyTorch checkpoints into Flax NNX modules; teacher weights for the trainer.

Command line (``python -m rgpkd_jax.convert --help``)::

    python -m rgpkd_jax.convert --arch wide_resnet50_2 --download      # official torchvision V1 file
    python -m rgpkd_jax.convert --arch resnet18 --input resnet18-f37072fd.pth [--output DIR]

Both write an orbax checkpoint of ``nnx.state(ResNet(arch))`` (by default into the cache that
``teacher.weights='imagenet'`` reads: ``$RGPKD_JAX_CACHE`` or ``~/.cache/rgpkd_jax``).

Library:

- :func:`assign_torch_state_dict` copies any torch state dict into any NNX module whose attribute
  names mirror the torch module names (torchvision ResNets, RD4AD's ``bn``/``decoder``), checking
  every key and shape;
- :func:`load_teacher` is what the trainer calls for ``teacher.arch`` / ``teacher.weights``.

``.pth`` files are read by :mod:`rgpkd_jax.torch_pickle`, which never imports torch and never
runs code from the file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging as std_logging
import os
import re
import shutil
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging
from flax import nnx

from rgpkd_jax import cache_dir, torch_pickle
from rgpkd_jax.models import resnet as resnet_lib

TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
# torchvision's ImageNet V1 files; the hex part of each name is a prefix of its sha256
# (third_party/torchvision_weights.md).
IMAGENET_WEIGHTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "wide_resnet50_2": "wide_resnet50_2-95faca4d.pth",
}
TORCHVISION_IGNORE = ("fc.*",)  # the classifier; our ResNet is a feature extractor
ALWAYS_IGNORED = ("*num_batches_tracked",)  # BN step counters: flax keeps none
TEACHER_METADATA = "teacher.json"
TEACHER_STATE = "state"


# ----------------------------------------------------------------------------------------------
# torch state dict -> NNX module


class StateDictMismatchError(ValueError):
    """A state dict that does not fit a module; ``missing``/``unexpected``/``misshaped`` list why."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str], misshaped: list[str]):
        super().__init__(message)
        self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped


@dataclasses.dataclass(frozen=True)
class TorchSlot:
    """Where one torch tensor goes: our variable's path and shape, and the layout change.

    Our array is ``np.flip(np.transpose(torch_array, perm), flip)``.
    """

    path: tuple[str | int, ...]
    shape: tuple[int, ...]
    dtype: Any
    perm: tuple[int, ...]
    flip: tuple[int, ...] = ()

    @property
    def torch_shape(self) -> tuple[int, ...]:
        shape = [0] * len(self.perm)
        for ours, theirs in enumerate(self.perm):
            shape[theirs] = self.shape[ours]
        return tuple(shape)

    def to_flax(self, value: np.ndarray) -> np.ndarray:
        return np.flip(np.transpose(value, self.perm), self.flip)


_BATCHNORM_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torch_leaf(parent: nnx.Module, leaf: str, ndim: int) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(torch name, perm, flip) of the variable ``leaf`` of ``parent``; see :class:`TorchSlot`."""
    spatial_first = tuple(range(2, ndim))
    if isinstance(parent, nnx.BatchNorm):
        return _BATCHNORM_NAMES.get(leaf, leaf), tuple(range(ndim)), ()
    if leaf == "kernel" and isinstance(parent, nnx.Conv):
        return "weight", (*spatial_first, 1, 0), ()  # (O, I, *k) -> (*k, I, O)
    if leaf == "kernel" and isinstance(parent, nnx.ConvTranspose):
        # torch (I, O, *k) is the gradient of a conv. Flax's default transposed conv correlates
        # the stride-dilated input with the kernel un-flipped, so the kernel is flipped here;
        # with transpose_kernel=True flax flips and swaps I/O itself and wants (*k, O, I).
        if parent.transpose_kernel:
            return "weight", (*spatial_first, 1, 0), ()
        return "weight", (*spatial_first, 0, 1), tuple(range(ndim - 2))
    if leaf == "kernel" and isinstance(parent, nnx.Linear):
        return "weight", (1, 0), ()  # (out, in) -> (in, out)
    return leaf, tuple(range(ndim)), ()


def _apply_prefix_map(key: str, prefix_map: Mapping[str, str]) -> str:
    """Our dotted key -> torch key, through the longest of our prefixes that matches."""
    matches = [(ours, theirs) for theirs, ours in prefix_map.items() if key.startswith(ours)]
    if not matches:
        return key
    ours, theirs = max(matches, key=lambda m: len(m[0]))
    return theirs + key[len(ours) :]


def torch_layout(module: nnx.Module, *, prefix_map: Mapping[str, str] | None = None) -> dict[str, TorchSlot]:
    """Maps each torch key that ``module`` expects to its :class:`TorchSlot`.

    Our path ``('layer1', 0, 'downsample', 0, 'kernel')`` becomes ``layer1.0.downsample.0.weight``:
    path parts joined by dots, the last renamed by the kind of module that owns it (Conv and
    Linear ``kernel`` -> ``weight``; BatchNorm ``scale/bias/mean/var`` -> ``weight/bias/
    running_mean/running_var``; any other variable keeps its name). Works on abstract modules
    (``nnx.eval_shape``) too. Only ``nnx.Param`` and ``nnx.BatchStat`` variables are mapped.
    """
    owners = dict(nnx.iter_modules(module))
    layout = {}
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Any(nnx.Param, nnx.BatchStat))):
        name, perm, flip = _torch_leaf(owners[path[:-1]], str(path[-1]), len(var.shape))
        key = ".".join([*(str(p) for p in path[:-1]), name])
        key = _apply_prefix_map(key, prefix_map or {})
        layout[key] = TorchSlot(tuple(path), tuple(var.shape), var.dtype, perm, flip)
    return layout


def _mismatches(layout: Mapping[str, TorchSlot], state_dict: Mapping[str, np.ndarray],
                ignore: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    patterns = (*ALWAYS_IGNORED, *ignore)
    used = {k for k in state_dict if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    missing = [f"{k} {slot.torch_shape}" for k, slot in layout.items() if k not in state_dict]
    unexpected = [f"{k} {tuple(state_dict[k].shape)}" for k in sorted(used - layout.keys())]
    misshaped = [f"{k}: file {tuple(state_dict[k].shape)}, model expects {slot.torch_shape}"
                 for k, slot in layout.items()
                 if k in state_dict and tuple(state_dict[k].shape) != slot.torch_shape]
    return missing, unexpected, misshaped


def assign_torch_state_dict(module: nnx.Module, state_dict: Mapping[str, np.ndarray], *,
                            prefix_map: Mapping[str, str] | None = None, ignore: Sequence[str] = (),
                            source: str = "state dict") -> None:
    """Copies a torch state dict into ``module`` in place, after checking every key and shape.

    Args:
      module: any NNX module whose attribute names follow the torch module names (lists of
        submodules as ``nnx.List``, so indices match ``torch.nn.Sequential``). Its ``nnx.Param``
        and ``nnx.BatchStat`` variables are all replaced (an abstract module from
        ``nnx.eval_shape`` becomes concrete); other variables are untouched.
      state_dict: torch key -> numpy array (:func:`rgpkd_jax.torch_pickle.load_state_dict`).
      prefix_map: torch key prefix -> our dotted path prefix. ``{'bn.': ''}`` loads the ``bn.*``
        entries of an RD4AD checkpoint into the module given (pass ``ignore=('decoder.*',)`` for
        the rest); ``{'bn.': 'ocbe.'}`` loads them into its ``ocbe`` submodule.
      ignore: fnmatch patterns of torch keys to skip (e.g. ``('fc.*',)`` for torchvision);
        ``*num_batches_tracked`` is always skipped.
      source: names the checkpoint in error messages.

    Layouts: Conv (O, I, kh, kw) -> (kh, kw, I, O); ConvTranspose (I, O, kh, kw) -> flipped
    (kh, kw, I, O) (or (kh, kw, O, I) unflipped with ``transpose_kernel=True``); Linear
    (out, in) -> (in, out); BatchNorm weight/bias/running_mean/running_var -> scale/bias/mean/var.
    Values are cast to the module's dtypes.

    Raises:
      StateDictMismatchError: one error listing all missing, unexpected and mis-shaped keys;
        the module is left unchanged.
    """
    layout = torch_layout(module, prefix_map=prefix_map)
    missing, unexpected, misshaped = _mismatches(layout, state_dict, ignore)
    if missing or unexpected or misshaped:
        lines = [f"{source} does not fit {type(module).__name__}: {len(missing)} missing, "
                 f"{len(unexpected)} unexpected, {len(misshaped)} mis-shaped key(s)"]
        for title, items in (("missing (the model has them, the file does not)", missing),
                             ("unexpected (the file has them, the model does not)", unexpected),
                             ("mis-shaped (torch layout)", misshaped)):
            if items:
                lines.append(f"  {title}:")
                lines += [f"    {item}" for item in items]
        raise StateDictMismatchError("\n".join(lines), missing, unexpected, misshaped)
    values = {slot.path: jnp.asarray(slot.to_flax(np.asarray(state_dict[key])), dtype=slot.dtype)
              for key, slot in layout.items()}
    nnx.update(module, nnx.from_flat_state(values))


# ----------------------------------------------------------------------------------------------
# torchvision ResNets


def _abstract_resnet(arch: str, num_layers: int) -> resnet_lib.ResNet:
    """A ResNet with shapes but no values: built in milliseconds, filled by a checkpoint."""
    return nnx.eval_shape(lambda: resnet_lib.ResNet(arch, rngs=nnx.Rngs(0), num_layers=num_layers))


def _torchvision_ignore(num_layers: int) -> tuple[str, ...]:
    return TORCHVISION_IGNORE + tuple(f"{tap}.*" for tap in resnet_lib.TAPS[num_layers:])


def guess_arch(state_dict: Mapping[str, np.ndarray]) -> str | None:
    """The torchvision architecture whose keys and shapes ``state_dict`` matches, if any."""
    for arch in resnet_lib.ARCHS:
        layout = torch_layout(_abstract_resnet(arch, 4))
        if not any(_mismatches(layout, state_dict, TORCHVISION_IGNORE)):
            return arch
    return None


def resnet_from_state_dict(arch: str, state_dict: Mapping[str, np.ndarray], *, num_layers: int = 4,
                           source: str = "state dict") -> resnet_lib.ResNet:
    """A ResNet filled from a torchvision state dict (``fc`` and layers past ``num_layers`` ignored)."""
    model = _abstract_resnet(arch, num_layers)
    try:
        assign_torch_state_dict(model, state_dict, ignore=_torchvision_ignore(num_layers), source=source)
    except StateDictMismatchError as e:
        guess = guess_arch(state_dict)
        if guess is None or guess == arch:
            raise
        raise StateDictMismatchError(
            f"{source} holds {guess} weights, not {arch}: use --arch {guess} "
            f"(config: teacher.arch={guess}).\n{e}", e.missing, e.unexpected, e.misshaped) from None
    return model


# ----------------------------------------------------------------------------------------------
# cache, download, converted checkpoints


class DownloadError(RuntimeError):
    """The official weights could not be fetched or failed their checksum."""


def imagenet_checkpoint_dir(arch: str) -> Path:
    """Where ``teacher.weights='imagenet'`` looks for the converted torchvision weights."""
    return cache_dir() / "teachers" / f"{arch}_imagenet"


def _weights_file(arch: str) -> str:
    try:
        return IMAGENET_WEIGHTS[arch]
    except KeyError:
        raise ValueError(f"no ImageNet weights are known for {arch!r}; "
                         f"choose one of {sorted(IMAGENET_WEIGHTS)}") from None


def _hash_prefix(file_name: str) -> str:
    """The sha256 prefix a torchvision file name carries (``resnet18-f37072fd.pth`` -> ``f37072fd``)."""
    return re.search(r"-([a-f0-9]+)\.", file_name).group(1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_weights(arch: str, *, directory: Path | None = None) -> Path:
    """Fetches the official torchvision file into ``directory`` (default: the cache), checked.

    The file is streamed to a temporary name, its sha256 compared with the prefix in its name
    (as torchvision does), and only then renamed into place. A valid cached copy is reused.
    Tests point ``TORCHVISION_BASE_URL`` at a ``file://`` folder.
    """
    file_name = _weights_file(arch)
    expected = _hash_prefix(file_name)
    directory = Path(directory) if directory is not None else cache_dir() / "torchvision"
    target = directory / file_name
    if target.is_file():
        if sha256_of(target).startswith(expected):
            logging.info("Using the cached %s", target)
            return target
        logging.warning("The cached %s fails its checksum; downloading it again.", target)
    directory.mkdir(parents=True, exist_ok=True)
    url = TORCHVISION_BASE_URL + file_name
    partial = directory / f".{file_name}.{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    logging.info("Downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                logging.log_every_n_seconds(logging.INFO, "%s: %d MB so far", 10, file_name,
                                            out.tell() >> 20)
        if not digest.hexdigest().startswith(expected):
            raise DownloadError(
                f"{url}: sha256 {digest.hexdigest()} does not start with {expected}, as the file name "
                "promises: the download is corrupt or not the official file. Nothing was saved; try again.")
        os.replace(partial, target)
    except OSError as e:  # urllib's URLError included
        raise DownloadError(
            f"cannot download {url}: {e}. Without internet access, download it elsewhere, copy it here "
            f"and run: python -m rgpkd_jax.convert --arch {arch} --input {file_name}") from e
    finally:
        partial.unlink(missing_ok=True)
    return target


def save_teacher(model: resnet_lib.ResNet, directory: Path, *, metadata: Mapping[str, Any],
                 overwrite: bool = False) -> Path:
    """Writes ``directory/{teacher.json, state/}`` (orbax), built under a temporary name and renamed."""
    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; pass --overwrite to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.tmp")
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / TEACHER_STATE, nnx.state(model))
        checkpointer.wait_until_finished()
        checkpointer.close()
        (staging / TEACHER_METADATA).write_text(json.dumps(
            {"arch": model.arch, "num_layers": len(model.tap_channels), **metadata}, indent=2))
        if directory.exists():
            old = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.old")
            directory.rename(old)
            staging.rename(directory)
            shutil.rmtree(old)
        else:
            staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def restore_teacher(directory: Path, arch: str, *, num_layers: int = 3) -> resnet_lib.ResNet:
    """The ResNet saved by :func:`save_teacher`; layers past ``num_layers`` are dropped."""
    directory = Path(directory)
    try:
        metadata = json.loads((directory / TEACHER_METADATA).read_text())
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"{directory} is not a converted teacher checkpoint (cannot read {TEACHER_METADATA}: {e}); "
            f"create one with: python -m rgpkd_jax.convert --arch {arch} --input <file.pth> "
            f"--output {directory}") from e
    if metadata.get("arch") != arch:
        raise ValueError(f"{directory} holds {metadata.get('arch')} weights, but the teacher is {arch}; "
                         f"set teacher.arch={metadata.get('arch')} or convert {arch} weights")
    saved_layers = metadata.get("num_layers", 4)
    if num_layers > saved_layers:
        raise ValueError(f"{directory} holds only {saved_layers} of the {num_layers} stages asked for; "
                         "convert the full torchvision file again (python -m rgpkd_jax.convert ...)")
    graphdef, abstract_state = nnx.split(_abstract_resnet(arch, saved_layers))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            state = checkpointer.restore((directory / TEACHER_STATE).absolute(), abstract_state)
    except Exception as e:  # orbax raises many types for a damaged directory
        raise ValueError(
            f"{directory / TEACHER_STATE}: cannot restore the teacher checkpoint ({type(e).__name__}: {e}); "
            f"delete {directory} and convert again (python -m rgpkd_jax.convert --arch {arch} ...)") from e
    full = nnx.merge(graphdef, state)
    model = _abstract_resnet(arch, num_layers)
    kept = {path for path, _ in nnx.to_flat_state(nnx.state(model))}
    nnx.update(model, nnx.from_flat_state(
        {path: var for path, var in nnx.to_flat_state(nnx.state(full)) if path in kept}))
    return model


def load_teacher(arch: str, weights: str, *, num_layers: int = 3) -> resnet_lib.ResNet:
    """The teacher for ``teacher.arch`` / ``teacher.weights``.

    ``weights``: ``'imagenet'`` (the converted torchvision V1 weights in the cache), ``'random'``
    (for tests and smoke runs only: logged loudly), a ``.pth`` file, or a directory written by
    ``python -m rgpkd_jax.convert``.
    """
    resnet_lib.spec_for(arch)  # a clear error for an unknown architecture
    if weights == "random":
        logging.warning(
            "!!! teacher.weights='random': the %s teacher has RANDOM weights. Anomaly scores and "
            "metrics of this run are MEANINGLESS; use it only to test the pipeline. !!!", arch)
        return resnet_lib.ResNet(arch, rngs=nnx.Rngs(0), num_layers=num_layers)
    if weights == "imagenet":
        directory = imagenet_checkpoint_dir(arch)
        if not directory.is_dir():
            file_name = _weights_file(arch)
            raise FileNotFoundError(
                f"ImageNet weights for the {arch} teacher are not in the cache ({directory}). "
                f"Run: python -m rgpkd_jax.convert --arch {arch} --download (offline: fetch "
                f"{TORCHVISION_BASE_URL}{file_name} elsewhere, then run python -m rgpkd_jax.convert "
                f"--arch {arch} --input {file_name})")
        return restore_teacher(directory, arch, num_layers=num_layers)
    path = Path(weights).expanduser()
    if path.is_dir():
        return restore_teacher(path, arch, num_layers=num_layers)
    if path.is_file():
        return resnet_from_state_dict(arch, torch_pickle.load_state_dict(path), num_layers=num_layers,
                                      source=str(path))
    raise FileNotFoundError(
        f"teacher.weights={weights!r} is neither 'imagenet', 'random', an existing .pth file nor a "
        "directory written by python -m rgpkd_jax.convert")


# ----------------------------------------------------------------------------------------------
# command line


def convert(arch: str, *, input_path: str | None = None, download: bool = False,
            output: str | None = None, overwrite: bool = False) -> Path | None:
    """What the command line does; returns the checkpoint directory, or None if it already existed."""
    if bool(input_path) == bool(download):
        raise app.UsageError("pass exactly one of --input=<file.pth> and --download")
    resnet_lib.spec_for(arch)
    imagenet_dir = imagenet_checkpoint_dir(arch)
    directory = Path(output).expanduser().absolute() if output else imagenet_dir
    if directory.exists() and not overwrite:
        logging.info("%s exists; nothing to do (pass --overwrite to convert again).", directory)
        return None
    pth = download_weights(arch) if download else Path(input_path).expanduser()
    digest = sha256_of(pth)
    official = digest.startswith(_hash_prefix(_weights_file(arch)))
    if directory == imagenet_dir and not official:
        logging.warning("%s is not torchvision's %s, but it goes where teacher.weights='imagenet' looks.",
                        pth, _weights_file(arch))
    model = resnet_from_state_dict(arch, torch_pickle.load_state_dict(pth), source=str(pth))
    return save_teacher(model, directory, overwrite=overwrite, metadata={
        "source": pth.name, "sha256": digest, "official_torchvision_imagenet": official})


def import_official_rd4ad(config, workdir: str, path: str) -> None:
    """An official RD4AD / SK-RD4AD checkpoint ({'bn', 'decoder'}) -> a workdir that
    `python -m rgpkd_jax.main --mode=eval|predict` evaluates with the same config."""
    from rgpkd_jax import train
    from rgpkd_jax.models.official_checkpoint import load_official_rd4ad

    if config is None or config.method not in ("rd4ad", "sk_rd4ad"):
        raise app.UsageError("--official_rd4ad needs --config configs/rd4ad.py:<dataset>/<category> "
                             "(or configs/sk_rd4ad.py) with the checkpoint's teacher arch")
    if not workdir:
        raise app.UsageError("--official_rd4ad needs --workdir: where the converted checkpoint goes")
    model, _ = train.setup_model(config)
    load_official_rd4ad(model, path)
    train.save_imported_model(model, config, workdir)


def _define_flags() -> None:
    from ml_collections import config_flags
    flags.DEFINE_enum("arch", None, list(resnet_lib.ARCHS), "Teacher architecture (torchvision weights).")
    flags.DEFINE_string("input", None, "A torchvision .pth file to convert.")
    flags.DEFINE_bool("download", False, f"Download torchvision's ImageNet V1 weights from "
                      f"{TORCHVISION_BASE_URL} (sha256 checked) into the cache, then convert them.")
    flags.DEFINE_string("output", None, "Checkpoint directory to write. Default: the cache that "
                        "teacher.weights='imagenet' reads ($RGPKD_JAX_CACHE or ~/.cache/rgpkd_jax).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing checkpoint directory.")
    flags.DEFINE_string("official_rd4ad", None, "An official RD4AD / SK-RD4AD checkpoint "
                        "({'bn','decoder'} .pth) to convert into --workdir, for --config.")
    flags.DEFINE_string("workdir", None, "With --official_rd4ad: the workdir to write.")
    config_flags.DEFINE_config_file("config", None, "With --official_rd4ad: the run's config, "
                                    "e.g. configs/rd4ad.py:mvtec_ad/bottle.")


class _HideOrbaxInfo(std_logging.Filter):
    """Orbax logs a dozen INFO lines per save; on the command line they bury our messages."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_HideOrbaxInfo())
    FLAGS = flags.FLAGS
    if FLAGS.official_rd4ad:
        try:
            import_official_rd4ad(FLAGS.config, FLAGS.workdir, FLAGS.official_rd4ad)
        except (OSError, ValueError) as e:
            sys.exit(f"error: {e}")
        print(f"Wrote {FLAGS.official_rd4ad} as the checkpoint of {FLAGS.workdir}. Evaluate it with: "
              f"python -m rgpkd_jax.main --config <the same config> --workdir {FLAGS.workdir} --mode eval")
        return
    if FLAGS.arch is None:
        raise app.UsageError("--arch is required (or --official_rd4ad with --config and --workdir)")
    try:
        directory = convert(FLAGS.arch, input_path=FLAGS.input, download=FLAGS.download,
                            output=FLAGS.output, overwrite=FLAGS.overwrite)
    except (OSError, ValueError, DownloadError) as e:  # our errors say what is wrong and how to fix it
        sys.exit(f"error: {e}")
    if directory is None:
        print(f"{FLAGS.output or imagenet_checkpoint_dir(FLAGS.arch)} exists; nothing to do "
              "(pass --overwrite to convert again).")
        return
    weights = "imagenet" if directory == imagenet_checkpoint_dir(FLAGS.arch) else str(directory)
    print(f"Wrote the {FLAGS.arch} teacher checkpoint to {directory}\n"
          f"Use it with: --config.teacher.arch={FLAGS.arch} --config.teacher.weights={weights}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
