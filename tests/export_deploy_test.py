"""Export (StableHLO, ONNX) against the JAX model, and the JAX-free predictor against --mode predict.

One tiny workdir per method (random teacher, synthetic data, no training, but biases and BN
statistics set as training leaves them: `tests.helpers.as_if_trained`) is exported once per
session; the tests compare its artefacts with the model that wrote them.

ONNX tolerance: onnxruntime computes the same float32 operations as XLA in another order (BN folded
into the convolution weights, other convolution algorithms), so the maps differ by rounding only:
a few float32 ulps of the values summed, ~1e-6 of the map's range measured; 1e-4 of it leaves
room for other CPUs' kernels, while a wrong bias or retrieval moves the maps by percents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from rgpkd_jax import evaluate, exporting, files, model_setup, predict
from rgpkd_jax.data import pipeline, preprocess
from rgpkd_jax.deploy import artefact, images as deploy_images
from rgpkd_jax.deploy.predictor import Predictor
from tests.helpers import METHODS, REPO, as_if_trained, one_error_line, prepare_on, run_module, tiny_config

ONNX_TOLERANCE = 1e-4  # of the map's range (module docstring)
BLOCKED = ("jax", "jaxlib", "flax", "optax", "orbax", "tensorflow_datasets", "matplotlib", "absl")


@dataclasses.dataclass
class Export:
    config: object
    workdir: str
    paths: dict          # format -> artefact path
    images: np.ndarray   # (4, H, W, 3) test images, preprocessed
    maps: np.ndarray     # the JAX model's maps and scores of `images`
    scores: np.ndarray
    folder: str          # the same images as files, plus an unreadable one

    @property
    def map_range(self) -> float:
        return float(np.ptp(self.maps))


def _write_folder(folder, images) -> None:
    (folder / "sub").mkdir(parents=True)
    uint8 = deploy_images.to_uint8(images)
    Image.fromarray(uint8[0]).save(folder / "a.png")
    Image.fromarray(uint8[1]).save(folder / "sub" / "b.jpg", quality=95)
    Image.fromarray(uint8[2]).convert("L").save(folder / "c.bmp")
    Image.fromarray(uint8[3]).save(folder / "d.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("not an image suffix: ignored")


@pytest.fixture(scope="module")
def export_of(module_tmp_path, synthetic_data_dir):
    """method -> its Export, built on first use."""
    built = {}

    def get(method: str) -> Export:
        if method not in built:
            config = tiny_config(method, data_dir=synthetic_data_dir)
            workdir = str(module_tmp_path / f"export_{method}")
            model, teacher_info = model_setup.setup_model(config)
            as_if_trained(model)
            model_setup.save_imported_model(model, config, workdir, teacher_info=teacher_info)
            batch = next(iter(pipeline.test_batches(config, batch_size=4)))
            folder = module_tmp_path / f"images_{method}"
            folder.mkdir()
            _write_folder(folder, batch["image"])
            # The folder's files as predict reads them (the JPEG and grey copies differ a little).
            _, images, _ = deploy_images.load_images(deploy_images.list_images(str(folder))[0],
                                                     config.dataset.image_size)
            runner = evaluate.MapRunner(model, config)
            maps, scores = runner(images)
            # threshold.json as evaluate.compute_threshold writes it, but with a threshold between
            # the folder's scores, so that both decisions are exercised (and 60 images fewer to score).
            files.write_json(os.path.join(workdir, evaluate.THRESHOLD_FILE), {
                "threshold": float(np.sort(scores)[1:3].mean()), "quantile": None, "num_images": 4,
                "source": "test: between the scores of the test folder", "score": config.eval.score,
                "checkpoint": {"step": 0, "digest": evaluate.trained_digest(model)}})
            paths = exporting.export_workdir(config, workdir)
            built[method] = Export(config, workdir, paths, images, maps, scores, str(folder))
        return built[method]

    return get


@pytest.mark.parametrize("method", METHODS)
def test_stablehlo_equals_the_jax_model(export_of, method):
    ex = export_of(method)
    with open(ex.paths["stablehlo"], "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))  # no model code involved
    assert exported.platforms == ("cpu", "cuda")
    for batch in (1, 4):
        maps, scores = exported.call(ex.images[:batch])
        assert maps.shape == (batch, *ex.images.shape[1:3]) and scores.shape == (batch,)
        assert np.abs(np.asarray(maps) - ex.maps[:batch]).max() <= 1e-5 * ex.map_range
        assert np.abs(np.asarray(scores) - ex.scores[:batch]).max() <= 1e-5 * ex.map_range
    loaded, description = exporting.load_stablehlo(ex.paths["stablehlo"])
    assert str(loaded.in_avals) == str(exported.in_avals) and description["method"] == method


@pytest.mark.parametrize("method", METHODS)
def test_onnx_under_onnxruntime_equals_the_jax_model(export_of, method):
    ex = export_of(method)
    predictor = Predictor(ex.paths["onnx"], providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        maps, scores = predictor(ex.images[:batch])
        assert np.abs(maps - ex.maps[:batch]).max() <= ONNX_TOLERANCE * ex.map_range
        assert np.abs(scores - ex.scores[:batch]).max() <= ONNX_TOLERANCE * ex.map_range
    with open(artefact.sidecar_path(ex.paths["onnx"])) as f:
        sidecar = json.load(f)
    embedded = json.loads(predictor.session.get_modelmeta().custom_metadata_map[artefact.ONNX_METADATA_KEY])
    assert embedded == {k: v for k, v in sidecar.items() if k not in ("artefact", "bytes", "sha256", "data_files")}
    assert list(sidecar["data_files"]) == ["model.onnx.data"]
    assert sidecar["method"] == method and sidecar["teacher"]["weights"] == "random"
    assert sidecar["threshold"] == evaluate.read_threshold(ex.workdir)
    assert sidecar["preprocessing"]["image_size"] == [64, 64]
    assert {"jax", "flax", "jax2onnx", "onnx", "rgpkd_jax"} <= set(sidecar["versions"])


@pytest.mark.parametrize("method", METHODS)
def test_predictor_decides_as_mode_predict(export_of, method, tmp_path):
    ex = export_of(method)
    ours = predict.predict_path(ex.config, ex.workdir, ex.folder, output_dir=str(tmp_path / "jax"))
    deployed = Predictor(ex.paths["onnx"]).predict_path(ex.folder, str(tmp_path / "onnx"))
    assert deployed["threshold"] == pytest.approx(ours["threshold"])
    assert deployed["errors"] == ours["errors"] and list(ours["errors"]) == [os.path.join(ex.folder, "broken.png")]
    rows = list(zip(ours["predictions"], deployed["predictions"], strict=True))
    assert [a["file"] for a, _ in rows] == [b["file"] for _, b in rows] and len(rows) == 4
    assert [a["defective"] for a, _ in rows] == [b["defective"] for _, b in rows]
    assert sorted(a["defective"] for a, _ in rows) == [False, False, True, True]
    np.testing.assert_allclose([b["score"] for _, b in rows], [a["score"] for a, _ in rows],
                               atol=ONNX_TOLERANCE * ex.map_range)
    for a, b in rows:  # a map value on a jet table boundary may take the neighbouring colour
        with Image.open(a["heatmap"]) as ha, Image.open(b["heatmap"]) as hb:
            difference = np.abs(np.asarray(ha, np.int16) - np.asarray(hb, np.int16))
        assert difference.max() <= 3 and (difference > 0).mean() < 0.01
    for name in ("predictions.json", "predictions.csv"):
        assert os.path.exists(tmp_path / "onnx" / name)


def test_rgpkd_exports_retrieve_as_the_model(synthetic_data_dir, tmp_path):
    """A prompt bank of three clearly different kinds of image (the category's normal images,
    noise, inverted images; float16, the default): each query retrieves an entry of its own kind,
    a prompt of another kind would move its map far beyond the tolerance, and the StableHLO and
    ONNX exports give the model's maps."""
    import onnxruntime as ort

    config = tiny_config("rgpkd", data_dir=synthetic_data_dir)
    assert config.model.bank_dtype == "float16" and config.model.top_k == 1
    model, _ = model_setup.setup_model(config)
    as_if_trained(model)
    normal = next(iter(pipeline.test_batches(config, batch_size=8, split="train")))["image"]
    noise = np.random.default_rng(0).normal(0.0, 1.5, normal.shape).astype(np.float32)
    kinds = [normal, noise, -normal]
    prepare_on(model, np.concatenate([kind[:4] for kind in kinds]))  # entries 4k..4k+3: kind k
    queries = np.concatenate([kind[4:] for kind in kinds])
    query_kinds = np.repeat(np.arange(len(kinds)), 4)
    positions, _ = model.prompts.retrieve(model.teacher(queries)[-1], top_k=1)
    positions = np.asarray(positions)[:, 0]
    np.testing.assert_array_equal(positions // 4, query_kinds)

    fn = exporting.map_function(model, config)
    maps = np.asarray(fn(queries)[0])
    tolerance = ONNX_TOLERANCE * float(np.ptp(maps))
    bank = model.prompts.features
    right = [level.get_value() for level in bank]
    for level, values in zip(bank, right):  # every entry's features moved to the next kind's slot
        level.set_value(jnp.roll(values, 4, axis=0))
    wrong_maps = np.asarray(exporting.map_function(model, config)(queries)[0])
    for level, values in zip(bank, right):
        level.set_value(values)
    assert np.abs(wrong_maps - maps).max(axis=(1, 2)).min() > 100 * tolerance

    exported = jax.export.deserialize(bytearray(exporting.stablehlo_bytes(fn, config.dataset.image_size, ["cpu"])))
    hlo_maps, hlo_scores = exported.call(queries)
    onnx_path = str(tmp_path / "model.onnx")
    exporting.write_onnx(exporting.onnx_model(fn, config.dataset.image_size, {"method": "rgpkd"}), onnx_path)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    onnx_maps, onnx_scores = session.run(list(artefact.OUTPUT_NAMES), {artefact.INPUT_NAME: queries})
    scores = np.asarray(fn(queries)[1])
    np.testing.assert_allclose(np.asarray(hlo_maps), maps, rtol=0, atol=1e-5 * np.ptp(maps))
    np.testing.assert_allclose(np.asarray(hlo_scores), scores, rtol=0, atol=1e-5 * np.ptp(maps))
    np.testing.assert_allclose(onnx_maps, maps, rtol=0, atol=tolerance)
    np.testing.assert_allclose(onnx_scores, scores, rtol=0, atol=tolerance)


def test_predictor_cli_runs_without_jax(export_of, tmp_path):
    """The deployed path imports numpy, Pillow and onnxruntime: JAX, flax & co. are blocked."""
    ex = export_of("rd4ad")
    code = (f"import sys; sys.modules.update(dict.fromkeys({BLOCKED!r}, None))\n"
            "import rgpkd_jax, rgpkd_jax.deploy.predictor\n"
            "from rgpkd_jax.deploy.__main__ import main\n"
            "status = main(sys.argv[1:])\n"
            f"assert not [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r} and sys.modules[m]]\n"
            "sys.exit(status)")
    out = subprocess.run([sys.executable, "-c", code, "--model", ex.paths["onnx"], "--input", ex.folder,
                          "--output_dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "scored 4 image(s), 1 unreadable" in out.stdout and "broken.png" in out.stdout
    with open(tmp_path / "predictions.json") as f:
        assert len(json.load(f)["predictions"]) == 4


def test_the_predictor_refuses_a_batch_size_below_one(tmp_path):
    """--batch_size 0 once fell back to the export's batch size without a word."""
    run = run_module("rgpkd_jax.deploy", "--model", tmp_path / "model.onnx", "--input", tmp_path,
                     "--batch_size", "0", timeout=120)
    assert one_error_line(run).startswith("error: batch_size=0: give a positive number of images")


def _copy(src: str, folder) -> str:
    folder.mkdir(exist_ok=True)
    dst = str(folder / os.path.basename(src))
    shutil.copy(src, dst)
    for suffix in (artefact.SIDECAR_SUFFIX, ".data"):  # the sidecar, ONNX's external weights
        if os.path.exists(src + suffix):
            shutil.copy(src + suffix, dst + suffix)
    return dst


def _edit_sidecar(path: str, **changes) -> None:
    with open(artefact.sidecar_path(path)) as f:
        sidecar = json.load(f)
    files.write_json(artefact.sidecar_path(path), {**sidecar, **changes})


def _one_line_error(error_type, fn, match: str) -> None:
    with pytest.raises(error_type, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_damaged_or_mismatched_artefacts_give_one_line_errors(export_of, tmp_path):
    ex = export_of("rd4ad")
    onnx_path, hlo_path = ex.paths["onnx"], ex.paths["stablehlo"]

    truncated = _copy(onnx_path, tmp_path / "truncated")
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(onnx_path) // 2)
    _one_line_error(ValueError, lambda: Predictor(truncated), "damaged or truncated")
    os.remove(artefact.sidecar_path(truncated))  # without its sidecar, onnxruntime's own check
    _one_line_error(ValueError, lambda: Predictor(truncated), "onnxruntime cannot load")

    cli = subprocess.run([sys.executable, "-m", "rgpkd_jax.deploy", "--model", truncated, "--input", ex.folder],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and cli.stdout == ""
    assert cli.stderr.startswith("error: onnxruntime cannot load") and cli.stderr.count("\n") == 1

    cut_weights = _copy(onnx_path, tmp_path / "cut_weights")
    with open(cut_weights + ".data", "r+b") as f:
        f.truncate(1000)
    _one_line_error(ValueError, lambda: Predictor(cut_weights), "model.onnx.data .* damaged or truncated")
    os.remove(cut_weights + ".data")
    _one_line_error(FileNotFoundError, lambda: Predictor(cut_weights), "model.onnx.data is missing")

    other_format = _copy(onnx_path, tmp_path / "other_format")
    shutil.copy(artefact.sidecar_path(hlo_path), artefact.sidecar_path(other_format))
    _one_line_error(ValueError, lambda: Predictor(other_format), "describes a stablehlo artefact, not onnx")

    other_export = _copy(onnx_path, tmp_path / "other_export")
    _edit_sidecar(other_export, sha256="0" * 64)
    _one_line_error(ValueError, lambda: Predictor(other_export), "sidecar belongs to another export")

    not_json = _copy(onnx_path, tmp_path / "not_json")
    files.write_text(artefact.sidecar_path(not_json), "{")
    _one_line_error(ValueError, lambda: Predictor(not_json), "is not valid JSON")

    other_size = _copy(onnx_path, tmp_path / "other_size")
    _edit_sidecar(other_size, preprocessing=artefact.preprocessing(128))
    _one_line_error(ValueError, lambda: Predictor(other_size), "says 128x128 .* another image size")
    predictor = Predictor(onnx_path)
    _one_line_error(ValueError, lambda: predictor(np.zeros((1, 128, 128, 3), np.float32)), "takes \\(N, 64, 64, 3\\)")

    hlo_size = _copy(hlo_path, tmp_path / "hlo_size")
    _edit_sidecar(hlo_size, preprocessing=artefact.preprocessing(128))
    _one_line_error(ValueError, lambda: exporting.load_stablehlo(hlo_size), "another image size")
    hlo_truncated = _copy(hlo_path, tmp_path / "hlo_truncated")
    with open(hlo_truncated, "r+b") as f:
        f.truncate(1000)
    _one_line_error(ValueError, lambda: exporting.load_stablehlo(hlo_truncated), "damaged or truncated")
    with open(artefact.sidecar_path(hlo_truncated)) as f:  # a sidecar that vouches for the cut file
        artefact.write(hlo_truncated, json.load(f))
    _one_line_error(ValueError, lambda: exporting.load_stablehlo(hlo_truncated), "cannot deserialize")
    _one_line_error(FileNotFoundError, lambda: exporting.load_stablehlo(str(tmp_path / "none.stablehlo")),
                    "does not exist")


def test_export_needs_the_threshold(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    _one_line_error(FileNotFoundError, lambda: exporting.export_workdir(config, str(tmp_path)), "threshold.json")
    _one_line_error(ValueError, lambda: exporting.export_workdir(config, str(tmp_path), formats=["tflite"]),
                    "choose from")


@pytest.mark.parametrize("mode,shape,size", [
    ("RGB", (75, 90), 64), ("RGB", (40, 40), (48, 64)), ("L", (70, 70), 48), ("RGBA", (33, 50), 32),
    ("P", (50, 40), 32), ("I;16", (30, 30), 16)])
def test_deployed_preprocessing_equals_the_training_one(mode, shape, size, tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "image.png"
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 2**16, shape, dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).convert(mode).save(path)
    deployed = deploy_images.preprocess_image(str(path), size)
    np.testing.assert_array_equal(deployed, preprocess.preprocess_image(str(path), size))
    np.testing.assert_array_equal(deployed, preprocess.preprocess_image(path.read_bytes(), size))


def test_jet_is_matplotlibs():
    import matplotlib
    values = np.concatenate([np.random.default_rng(0).random(10_000).astype(np.float32),
                             np.float32([0, 1, 0.5, 1 / 256, 255 / 256, np.nan])])
    np.testing.assert_array_equal(deploy_images.jet(values), matplotlib.colormaps["jet"](values)[..., :3])


def test_deploy_imports_nothing_that_imports_jax():
    """Static check of every import in rgpkd_jax/deploy (function-level ones included)."""
    import ast
    allowed_roots = {"numpy", "PIL", "onnxruntime", "__future__"} | set(sys.stdlib_module_names)
    allowed_ours = {"rgpkd_jax.files"}  # numpy and the standard library only
    folder = os.path.join(REPO, "rgpkd_jax", "deploy")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(folder, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # `from rgpkd_jax import x` imports rgpkd_jax.x
                modules = ([f"{node.module}.{alias.name}" for alias in node.names]
                           if node.module in ("rgpkd_jax", "rgpkd_jax.deploy") else [node.module])
            else:
                continue
            for module in modules:
                ok = (module.split(".")[0] in allowed_roots or module in allowed_ours
                      or module.startswith("rgpkd_jax.deploy"))
                assert ok, f"rgpkd_jax/deploy/{name} imports {module}"
