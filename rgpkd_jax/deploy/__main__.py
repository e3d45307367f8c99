"""Command line of the deployed predictor: scores images with an exported ONNX model, no JAX.

    python -m rgpkd_jax.deploy --model W/export/model.onnx --input path/to/image_or_folder \
        [--output_dir DIR] [--batch_size N] [--providers CUDAExecutionProvider,CPUExecutionProvider]

Writes what ``--mode predict`` writes (predictions.json, predictions.csv, heat maps); an
unreadable image is named and skipped. An error of the model or its sidecar is one line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rgpkd_jax.deploy import scoring


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rgpkd_jax.deploy", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the .onnx file that python -m rgpkd_jax.export wrote")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output_dir", default=None,
                        help="where results go (default: a new folder predictions/<UTC time> beside the model)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="images per onnxruntime call (default: the export's evaluation batch size)")
    parser.add_argument("--providers", default=None,
                        help="comma-separated onnxruntime execution providers (default: all available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR)  # the summary names the files it skipped
    try:
        from rgpkd_jax.deploy.predictor import Predictor  # onnxruntime loads here, after --help

        predictor = Predictor(args.model, batch_size=args.batch_size,
                              providers=args.providers.split(",") if args.providers else None)
        result = predictor.predict_path(args.input, args.output_dir)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(scoring.format_summary(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
