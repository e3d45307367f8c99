"""The frozen teacher: torchvision weights (fit, download, convert, cache), and the weights policy.

``teacher.arch`` / ``teacher.weights`` in a config name what :func:`load_into` puts into a model's
``teacher``: ``imagenet`` (torchvision's V1 file, converted once into the cache by
``python -m rgpkd_jax.convert``), ``random``, a ``.pth`` file, or a converted directory.

A random teacher makes every metric meaningless (measured: RD4AD with a random ResNet18 teacher
scores image AUROC 0.53-0.55 on two real defect sets), so it is only used when asked for, or by
the demo when ImageNet weights can't be had, and then it is announced loudly and recorded in the
run's files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from rgpkd_jax import cache_dir, files, torch_pickle
from rgpkd_jax.download import DownloadError, fetch, file_digest
from rgpkd_jax.models import resnet as resnet_lib
from rgpkd_jax.torch_state import StateDictMismatchError, assign_torch_state_dict, mismatches, torch_layout

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
TEACHER_METADATA = "teacher.json"
TEACHER_STATE = "state"


def _abstract_resnet(arch: str, num_layers: int) -> resnet_lib.ResNet:
    """A ResNet with shapes but no values: built in milliseconds, filled by a checkpoint."""
    return nnx.eval_shape(lambda: resnet_lib.ResNet(arch, rngs=nnx.Rngs(0), num_layers=num_layers))


def _torchvision_ignore(num_layers: int) -> tuple[str, ...]:
    return TORCHVISION_IGNORE + tuple(f"{tap}.*" for tap in resnet_lib.TAPS[num_layers:])


def guess_arch(state_dict: Mapping[str, np.ndarray]) -> str | None:
    """The torchvision architecture whose keys and shapes ``state_dict`` matches, if any."""
    for arch in resnet_lib.ARCHS:
        layout = torch_layout(_abstract_resnet(arch, 4))
        if not any(mismatches(layout, state_dict, TORCHVISION_IGNORE)):
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


def download_weights(arch: str, *, directory: Path | None = None) -> Path:
    """Fetches the official torchvision file into ``directory`` (default: the cache), checked
    against the sha256 prefix its name carries (as torchvision does); a valid cached copy is reused.
    Tests point ``TORCHVISION_BASE_URL`` at a ``file://`` folder."""
    file_name = _weights_file(arch)
    directory = Path(directory) if directory is not None else cache_dir() / "torchvision"
    return Path(fetch(
        TORCHVISION_BASE_URL + file_name, directory / file_name, algorithm="sha256",
        expected=_hash_prefix(file_name), prefix_only=True,
        offline_hint=(f"Without internet access, download it elsewhere, copy it here and run: "
                      f"python -m rgpkd_jax.convert --arch {arch} --pth {file_name}")))


def save_teacher(model: resnet_lib.ResNet, directory: Path, *, metadata: Mapping[str, Any],
                 overwrite: bool = False) -> Path:
    """Writes ``directory/{teacher.json, state/}`` (orbax) whole (`files.staged_dir`). Without
    ``overwrite``, a directory another process writes meanwhile is kept (two conversions of the
    same weights race harmlessly)."""
    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists; pass --overwrite to replace it")
    with files.staged_dir(directory, replace=overwrite) as staging:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(staging / TEACHER_STATE, nnx.state(model))
        checkpointer.wait_until_finished()
        checkpointer.close()
        (staging / TEACHER_METADATA).write_text(json.dumps(
            {"arch": model.arch, "num_layers": len(model.tap_channels), **metadata}, indent=2))
    return directory


def restore_teacher(directory: Path, arch: str, *, num_layers: int = 3) -> resnet_lib.ResNet:
    """The ResNet saved by :func:`save_teacher`; layers past ``num_layers`` are dropped."""
    directory = Path(directory)
    try:
        metadata = json.loads((directory / TEACHER_METADATA).read_text())
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"{directory} is not a converted teacher checkpoint (cannot read {TEACHER_METADATA}: {e}); "
            f"create one with: python -m rgpkd_jax.convert --arch {arch} --pth <file.pth> "
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
    check_weights_available(arch, weights)
    if weights == "random":
        logging.warning(
            "!!! teacher.weights='random': the %s teacher has RANDOM weights. Anomaly scores and "
            "metrics of this run are MEANINGLESS; use it only to test the pipeline. !!!", arch)
        return resnet_lib.ResNet(arch, rngs=nnx.Rngs(0), num_layers=num_layers)
    directory = imagenet_checkpoint_dir(arch) if weights == "imagenet" else Path(weights).expanduser()
    if directory.is_dir():
        return restore_teacher(directory, arch, num_layers=num_layers)
    return resnet_from_state_dict(arch, torch_pickle.load_state_dict(directory), num_layers=num_layers,
                                  source=str(directory))


def check_weights_available(arch: str, weights: str) -> None:
    """Raises what :func:`load_teacher` would for an unknown architecture or absent weights, without
    loading anything: the command line checks this before it prepares data or touches the workdir."""
    resnet_lib.spec_for(arch)  # a clear error for an unknown architecture
    if weights == "random":
        return
    if weights == "imagenet":
        directory = imagenet_checkpoint_dir(arch)
        if not directory.is_dir():
            file_name = _weights_file(arch)
            raise FileNotFoundError(
                f"ImageNet weights for the {arch} teacher are not in the cache ({directory}). "
                f"Run: python -m rgpkd_jax.convert --arch {arch} --download (offline: fetch "
                f"{TORCHVISION_BASE_URL}{file_name} elsewhere, then run python -m rgpkd_jax.convert "
                f"--arch {arch} --pth {file_name})")
        return
    if not Path(weights).expanduser().exists():
        raise FileNotFoundError(
            f"teacher.weights={weights!r} is neither 'imagenet', 'random', an existing .pth file nor a "
            "directory written by python -m rgpkd_jax.convert")


def convert_torchvision(arch: str, *, pth: str | None = None, download: bool = False,
                        output: str | None = None, overwrite: bool = False) -> Path | None:
    """Converts torchvision weights (a file, or downloaded) into a teacher checkpoint directory.

    Returns the directory, or None if it already existed (and ``overwrite`` is False).
    """
    if bool(pth) == bool(download):
        raise ValueError("pass exactly one of --pth=<file.pth> and --download")
    resnet_lib.spec_for(arch)
    imagenet_dir = imagenet_checkpoint_dir(arch)
    directory = Path(output).expanduser().absolute() if output else imagenet_dir
    if directory.exists() and not overwrite:
        logging.info("%s exists; nothing to do (pass --overwrite to convert again).", directory)
        return None
    pth = download_weights(arch) if download else Path(pth).expanduser()
    digest = file_digest(pth, "sha256")
    official = digest.startswith(_hash_prefix(_weights_file(arch)))
    if directory == imagenet_dir and not official:
        logging.warning("%s is not torchvision's %s, but it goes where teacher.weights='imagenet' looks.",
                        pth, _weights_file(arch))
    model = resnet_from_state_dict(arch, torch_pickle.load_state_dict(pth), source=str(pth))
    return save_teacher(model, directory, overwrite=overwrite, metadata={
        "source": pth.name, "sha256": digest, "official_torchvision_imagenet": official})


RANDOM_TEACHER_WARNING = (
    "RANDOM TEACHER: no ImageNet weights were loaded, so the anomaly scores below are at chance "
    "level and are NOT results (RD4AD with a random ResNet18 teacher scores image AUROC 0.53-0.55 on "
    "real defects). Get the weights with: python -m rgpkd_jax.convert --arch {arch} --download")


def load_into(model: nnx.Module, config, *, recorded: Mapping[str, Any] | None = None) -> dict:
    """Loads `config.teacher.weights` into `model.teacher`; returns its provenance (arch, where the
    weights came from, and the `digest` of the loaded values), which run files and checkpoints keep.

    `recorded`: the provenance a checkpoint holds. A run that fell back to a random teacher is
    rebuilt random even once ImageNet weights are cached (docs/checkpoints.md); the caller
    compares the digests.
    """
    arch, weights = config.teacher.arch, config.teacher.weights
    fell_back = (recorded is not None and "reason" in recorded and weights == "imagenet"
                 and config.teacher.fallback_to_random)
    if fell_back:
        info = _random_provenance(arch, config.seed, reason=recorded["reason"])
    else:
        info = _load_weights(model, config, arch, weights)
    return {**info, "digest": fingerprint(model.teacher)}


def _random_provenance(arch: str, seed: int, **details) -> dict:
    """A random teacher (initialised by `build_model` from `config.seed`), announced loudly."""
    message = RANDOM_TEACHER_WARNING.format(arch=arch)
    logging.warning("\n%s\n%s\n%s%s", "!" * 100, message, "!" * 100,
                    f"\n(reason: {details['reason']})" if "reason" in details else "")
    return {"arch": arch, "weights": "random", "seed": int(seed), "warning": message, **details}


def _load_weights(model: nnx.Module, config, arch: str, weights: str) -> dict:
    if weights == "random":
        return _random_provenance(arch, config.seed)
    try:
        pretrained = load_teacher(arch, weights, num_layers=_num_layers(model))
    except Exception as e:  # noqa: BLE001 - any failure to get weights may fall back, loudly
        if not (config.teacher.fallback_to_random and weights == "imagenet"):
            raise
        pretrained = _download_or_none(arch, model, reason=e)
        if pretrained is None:
            return _random_provenance(arch, config.seed, reason=str(e))
    nnx.update(model.teacher, nnx.state(pretrained))
    return {"arch": arch, "weights": weights, **_weights_source(arch, weights)}


def _weights_source(arch: str, weights: str) -> dict:
    """Where loaded weights came from: the converted directory's record of its .pth (name,
    sha256, torchvision URL when official), or a .pth file's own sha256."""
    path = imagenet_checkpoint_dir(arch) if weights == "imagenet" else Path(weights).expanduser()
    if path.is_file():
        return {"path": str(path.absolute()), "sha256": file_digest(path, "sha256")}
    metadata = json.loads((path / TEACHER_METADATA).read_text())
    source = {"path": str(path.absolute()), "source": metadata.get("source"), "sha256": metadata.get("sha256")}
    if metadata.get("official_torchvision_imagenet"):
        source["url"] = TORCHVISION_BASE_URL + _weights_file(arch)
    return source


def fingerprint(module: nnx.Module, which=...) -> str:
    """sha256 of a module's values (those the nnx filter ``which`` selects, all by default; as
    float32, in path order): the same teacher gives the same digest whichever file or seed it was
    built from (and the same trained weights, whichever dtype they were restored in)."""
    digest = hashlib.sha256()
    leaves, _ = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(module, which)))
    for path, value in leaves:
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(value, np.float32)).tobytes())
    return digest.hexdigest()


def describe(provenance: Mapping[str, Any]) -> str:
    """A teacher's provenance in a few words, for one-line errors."""
    if provenance.get("weights") == "random":
        origin = f"random (seed {provenance.get('seed')})"
    else:
        origin = f"{provenance.get('path') or provenance.get('weights')} (sha256 {str(provenance.get('sha256'))[:12]})"
    return f"{provenance.get('arch')} {origin}, values {str(provenance.get('digest'))[:12]}"


def _num_layers(model) -> int:
    return len(model.teacher.tap_channels)


def _download_or_none(arch: str, model, reason: Exception):
    """First use of the demo: try to download and convert the ImageNet weights once."""
    logging.info("ImageNet weights for %s are not cached (%s); trying to download them", arch, reason)
    try:
        convert_torchvision(arch, download=True)
        return load_teacher(arch, "imagenet", num_layers=_num_layers(model))
    except Exception as e:  # noqa: BLE001 - no network here is the common case
        logging.warning("could not download the %s weights: %s", arch, e)
        return None
