"""The sidecar of an exported model: what a deployed artefact is, and the checks before it is used.

``python -m rgpkd_jax.export`` writes each artefact (``model.onnx``, ``model.stablehlo``) with a
JSON sidecar beside it (``model.onnx.json``, ...): the method, the predict threshold, the
preprocessing constants, the anomaly-map settings, the teacher's provenance, the package versions,
and the size and sha256 of the artefact and of its external-data file (ONNX keeps its weights in
``model.onnx.data``, which onnxruntime maps into memory). The ONNX file carries the same
description (without sizes and hashes) in its metadata under the key :data:`ONNX_METADATA_KEY`;
a StableHLO file has no place for it.

Every check here raises ``ValueError`` / ``FileNotFoundError`` with one line that says what is
wrong and what to do; command lines print it as ``error: ...``.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from rgpkd_jax import files
from rgpkd_jax.deploy import images

SCHEMA = "rgpkd_jax.export/1"
SIDECAR_SUFFIX = ".json"
ONNX_METADATA_KEY = "rgpkd_jax"
FORMATS = ("stablehlo", "onnx")
INPUT_NAME = "images"
OUTPUT_NAMES = ("anomaly_map", "score")
_REQUIRED = ("schema", "format", "method", "preprocessing", "threshold")
_EXPORT_AGAIN = "export it again with python -m rgpkd_jax.export"


def sidecar_path(artefact_path: str) -> str:
    return os.fspath(artefact_path) + SIDECAR_SUFFIX


def preprocessing(image_size: images.Size) -> dict:
    """The preprocessing an artefact expects, as the sidecar records it."""
    height, width = images.size_hw(image_size)
    return {"image_size": [height, width], "color": "RGB", "resize": f"PIL {images.INTERPOLATION} on uint8",
            "interpolation": images.INTERPOLATION, "scale": "1/255",
            "mean": _short(images.IMAGENET_MEAN), "std": _short(images.IMAGENET_STD), "layout": "NHWC"}


def _short(values: np.ndarray) -> list[float]:
    """float32 constants as the decimals that round to them (0.485, not 0.48500001430511475)."""
    return [float(f"{v:.7g}") for v in values]


def write(artefact_path: str, description: dict, *, data_files: Sequence[str] = ()) -> str:
    """Writes the sidecar of the (already written) artefact: ``description`` plus the size and sha256
    of the artefact and of its ``data_files`` (ONNX external data, beside it). Returns the sidecar's
    path."""
    folder = os.path.dirname(os.path.abspath(artefact_path))
    sidecar = {**description, "artefact": os.path.basename(artefact_path), **_fingerprint(artefact_path),
               "data_files": {os.path.basename(f): _fingerprint(os.path.join(folder, os.path.basename(f)))
                              for f in data_files}}
    files.write_json(sidecar_path(artefact_path), sidecar)
    return sidecar_path(artefact_path)


def read(artefact_path: str, fmt: str) -> dict:
    """The sidecar of ``artefact_path``, checked against the artefact and its data files (size and
    sha256) and against what this package can run (schema, format, preprocessing)."""
    path = sidecar_path(artefact_path)
    if not os.path.isfile(artefact_path):
        raise FileNotFoundError(f"{artefact_path} does not exist; {_EXPORT_AGAIN}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the sidecar that export writes beside {artefact_path}; "
                                f"{_EXPORT_AGAIN}")
    try:
        with open(path) as f:
            description = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); {_EXPORT_AGAIN}") from None
    check(description, fmt, source=path)
    folder = os.path.dirname(os.path.abspath(artefact_path))
    expected = {artefact_path: {k: description.get(k) for k in ("bytes", "sha256")}}
    expected.update({os.path.join(folder, name): fingerprint
                     for name, fingerprint in (description.get("data_files") or {}).items()})
    for file, fingerprint in expected.items():
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{file} is missing: {artefact_path} keeps its weights there; {_EXPORT_AGAIN}")
        found = _fingerprint(file, fingerprint.get("bytes"))
        if found != fingerprint:
            raise ValueError(
                f"{file} ({found['bytes']} bytes) is not the file the sidecar {path} describes "
                f"({fingerprint.get('bytes')} bytes, sha256 {str(fingerprint.get('sha256'))[:12]}...): the "
                f"artefact is damaged or truncated, or the sidecar belongs to another export; {_EXPORT_AGAIN}")
    return description


def _fingerprint(path: str, expected_bytes: int | None = None) -> dict:
    """{"bytes", "sha256"} of a file (no hashing when its size already differs from expected_bytes)."""
    size = os.path.getsize(path)
    digest = files.file_digest(path, "sha256") if expected_bytes in (None, size) else None
    return {"bytes": size, "sha256": digest}


def check(description: dict, fmt: str, *, source: str) -> None:
    """A description of schema :data:`SCHEMA` for format ``fmt`` with the preprocessing of
    :mod:`rgpkd_jax.deploy.images`."""
    if not isinstance(description, dict) or description.get("schema") != SCHEMA:
        found = description.get("schema") if isinstance(description, dict) else type(description).__name__
        raise ValueError(f"{source} is not an rgpkd_jax export description (schema {found!r}, expected "
                         f"{SCHEMA!r}); {_EXPORT_AGAIN}")
    missing = [key for key in _REQUIRED if key not in description]
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}; {_EXPORT_AGAIN}")
    if description["format"] != fmt:
        raise ValueError(f"{source} describes a {description['format']} artefact, not {fmt}: it belongs "
                         "to another file")
    expected = preprocessing(image_size(description))
    theirs = description["preprocessing"]
    for key in ("interpolation", "color", "layout"):
        if theirs.get(key) != expected[key]:
            raise ValueError(f"{source}: preprocessing {key}={theirs.get(key)!r}, but this predictor "
                             f"implements {expected[key]!r}")
    for key in ("mean", "std"):
        if not np.array_equal(np.float32(theirs.get(key, [])), np.float32(expected[key])):
            raise ValueError(f"{source}: preprocessing {key}={theirs.get(key)}, but this predictor "
                             f"normalises with {expected[key]}")


def image_size(description: dict) -> tuple[int, int]:
    """(height, width) of the images the artefact takes."""
    try:
        height, width = (int(v) for v in description["preprocessing"]["image_size"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("the export description has no valid preprocessing.image_size [height, width]; "
                         f"{_EXPORT_AGAIN}") from None
    return height, width


def check_input_shape(description: dict, shape, *, source: str) -> None:
    """The artefact's input shape (batch, H, W, 3) must match the description's image size."""
    height, width = image_size(description)
    dims = tuple(shape)
    if len(dims) != 4 or tuple(dims[1:]) != (height, width, 3):
        raise ValueError(f"{source} takes images of shape {list(dims)}, but its description says "
                         f"{height}x{width} RGB (batch, {height}, {width}, 3): the sidecar belongs to an "
                         f"export at another image size; {_EXPORT_AGAIN}")
