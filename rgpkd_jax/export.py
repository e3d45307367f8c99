"""Command line: a trained workdir as StableHLO and ONNX artefacts for deployment.

    python -m rgpkd_jax.export --config configs/rd4ad.py:mvtec_ad/bottle --workdir W \
        [--format stablehlo,onnx] [--output_dir W/export] [--platforms cpu,cuda]

Writes ``model.stablehlo`` and/or ``model.onnx``, each with its JSON sidecar (``model.onnx.json``):
the threshold of ``W/threshold.json``, preprocessing, method, teacher, versions. Score images with
the ONNX model and no JAX: ``python -m rgpkd_jax.deploy --model W/export/model.onnx --input DIR``.
ONNX export needs jax2onnx (README, "Deploy"). The work is :mod:`rgpkd_jax.exporting`; nothing
imports this module.
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from rgpkd_jax import cli, config_files
from rgpkd_jax.deploy import artefact

_CONFIG = config_files.DEFINE_config_file(
    "config", "The run's config, e.g. configs/rd4ad.py:mvtec_ad/bottle.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The trained workdir (checkpoints, threshold.json).")
_FORMAT = flags.DEFINE_list("format", list(artefact.FORMATS),
                            f"Artefacts to write, comma-separated: {', '.join(artefact.FORMATS)} (default: both).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the artefacts go. Default: <workdir>/export.")
_PLATFORMS = flags.DEFINE_list("platforms", ["cpu", "cuda"], "StableHLO: platforms to lower for.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required: the config the workdir was trained with")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required: the trained workdir to export")
    from rgpkd_jax import exporting  # the heavy part; --help stays fast

    paths = exporting.export_workdir(_CONFIG.value, _WORKDIR.value, formats=_FORMAT.value,
                                     output_dir=_OUTPUT_DIR.value, platforms=_PLATFORMS.value)
    for fmt, path in paths.items():
        print(f"wrote {path} ({fmt}) and {artefact.sidecar_path(path)}")
    if "onnx" in paths:
        print(f"score images without JAX: python -m rgpkd_jax.deploy --model {paths['onnx']} --input DIR")


if __name__ == "__main__":
    cli.run(main)
