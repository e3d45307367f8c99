"""Workdir checkpoints: importing a model trained elsewhere, a kill during an asynchronous save,
data positions across process layouts, what a checkpoint holds (no teacher, its provenance),
damaged checkpoints, and evaluation configs that differ from training."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from PIL import Image

from rgpkd_jax import checkpointing, evaluate, exporting, model_setup, predict, train
from rgpkd_jax import teacher as teacher_lib
from rgpkd_jax.config_files import ConfigError
from rgpkd_jax.data import pipeline
from rgpkd_jax.models import resnet as resnet_lib
from tests.helpers import one_error_line, run_module, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_refuses_a_workdir_that_already_has_checkpoints(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    model, teacher_info = model_setup.setup_model(config)
    model_setup.save_imported_model(model, config, str(tmp_path), teacher_info=teacher_info)
    with pytest.raises(FileExistsError, match="empty --workdir"):
        model_setup.save_imported_model(model, config, str(tmp_path), teacher_info=teacher_info)


_KILLED_DURING_SAVE = textwrap.dedent("""
    import os, sys
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from rgpkd_jax import checkpointing
    from tests.helpers import one_error_line, run_module, tiny_config
    manager = checkpointing.checkpoint_manager(sys.argv[1], tiny_config("rd4ad", data_dir="").train)
    def save(step):
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave({"w": jnp.full((1000,), float(step))}),
            data=ocp.args.JsonSave({"per_process": [{"next_index": step}]})))
    save(1)
    manager.wait_until_finished()
    save(2)  # asynchronous: returns once the arrays are in host memory
    os._exit(0)  # killed while step 2 is being written
""")


def test_a_kill_during_an_async_save_leaves_no_checkpoint_that_looks_complete(tmp_path):
    result = subprocess.run([sys.executable, "-c", _KILLED_DURING_SAVE, str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-3000:]
    # orbax writes to a temporary name (left behind by the kill), renamed when the save commits.
    left = os.listdir(tmp_path / "checkpoints")
    assert "2" not in left and any(name.startswith("2.") for name in left), left
    config = tiny_config("rd4ad", data_dir="")
    manager = checkpointing.checkpoint_manager(str(tmp_path), config.train)
    assert manager.latest_step() == 1
    # The rerun saves that step again over what the kill left.
    manager.save(2, args=ocp.args.Composite(state=ocp.args.StandardSave({"w": np.zeros(3)}),
                                            data=ocp.args.JsonSave({})))
    manager.close()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_a_layout_change_resumes_only_without_data_workers():
    saved = {"process_count": 2, "num_workers": 0, "per_process": [{"next_index": 3}] * 2}
    one_process = {"process_count": 1, "num_workers": 0}
    assert checkpointing._position(saved, one_process, 3) == {"next_index": 3}
    with_workers = {"process_count": 2, "num_workers": 2,
                    "per_process": [{"workers": [1, 2]}, {"workers": [2, 1]}]}
    assert checkpointing._position(with_workers, {"process_count": 2, "num_workers": 2}, 3) == {
        "workers": [1, 2]}
    with pytest.raises(ValueError, match=r"step 3 was written by 2 process\(es\) with data.num_workers=2, and this run has 1 .*resume with 2 process\(es\) and --config.data.num_workers=2"):
        checkpointing._position(with_workers, {"process_count": 1, "num_workers": 2}, 3)


def _imported_workdir(config, workdir) -> str:
    """A workdir holding `config`'s (untrained) model as its step-0 checkpoint."""
    model, teacher_info = model_setup.setup_model(config)
    model_setup.save_imported_model(model, config, str(workdir), teacher_info=teacher_info)
    return str(workdir)


def _saved_tree(workdir, step):
    return ocp.StandardCheckpointer().metadata(os.path.join(workdir, "checkpoints", str(step), "state")).item_metadata


def test_a_checkpoint_holds_no_teacher_nor_prompt_bank_but_records_the_teacher(tmp_path, synthetic_data_dir):
    config = tiny_config("rgpkd", data_dir=synthetic_data_dir)
    workdir = _imported_workdir(config, tmp_path)
    saved = _saved_tree(workdir, 0)["model"]
    assert "teacher" not in saved and "prompts" not in saved and "student" in saved
    model, teacher_info, _ = model_setup.load_trained_model(config, workdir)
    assert teacher_info["weights"] == "random" and teacher_info["seed"] == config.seed
    assert teacher_info["digest"] == teacher_lib.fingerprint(model.teacher)
    assert model.prompts.size == pipeline.num_examples(config, "train")  # rebuilt from the data


def test_a_different_teacher_at_restore_is_one_error_naming_both(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    workdir = _imported_workdir(config, tmp_path / "run")
    other = teacher_lib.save_teacher(resnet_lib.ResNet("resnet18", rngs=nnx.Rngs(7)), tmp_path / "other",
                                     metadata={"source": "test", "sha256": "0" * 64})
    config.teacher.weights = str(other)
    with pytest.raises(model_setup.TeacherMismatchError) as error:
        model_setup.load_trained_model(config, workdir)
    message = str(error.value)
    assert "\n" not in message
    assert "resnet18 random (seed 0" in message and f"resnet18 {other} (sha256 000000000000" in message


def test_a_model_trained_with_a_fallback_random_teacher_still_warns_once_imagenet_weights_appear(
        tmp_path, synthetic_data_dir, monkeypatch):
    monkeypatch.setenv("RGPKD_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(teacher_lib, "TORCHVISION_BASE_URL", (tmp_path / "offline").as_uri() + "/")
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    config.teacher.weights, config.teacher.fallback_to_random = "imagenet", True  # as configs/demo.py
    workdir = _imported_workdir(config, tmp_path / "run")  # no weights anywhere: falls back to random
    evaluate.compute_threshold(model_setup.load_trained_model(config, workdir)[0], config, workdir)
    teacher_lib.save_teacher(resnet_lib.ResNet("resnet18", rngs=nnx.Rngs(7)),
                             teacher_lib.imagenet_checkpoint_dir("resnet18"), metadata={"source": "test"})
    result = evaluate.evaluate_checkpoint(config, workdir)
    assert result["teacher"]["weights"] == "random" and "RANDOM TEACHER" in result["warning"]


@pytest.mark.parametrize("damage", ["truncated_array_file", "emptied_metadata"])
def test_a_damaged_newest_checkpoint_is_one_error_and_moving_it_aside_resumes(tmp_path, synthetic_data_dir, damage):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, checkpoint_every_steps=1)
    config.train.max_steps_this_run = 2
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, evaluate_after=False)
    step_dir = os.path.join(workdir, "checkpoints", "2")
    if damage == "emptied_metadata":
        open(os.path.join(step_dir, "state", "_METADATA"), "w").close()
    else:
        arrays = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(step_dir, "state"))
                  for name in names if "/d/" in os.path.join(root, name)]
        biggest = max(arrays, key=os.path.getsize)
        with open(biggest, "r+b") as f:
            f.truncate(os.path.getsize(biggest) // 2)
    cli = run_module("rgpkd_jax.main", "--config", os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny"),
                     f"--config.dataset.data_dir={synthetic_data_dir}", "--config.teacher.weights=random",
                     f"--workdir={workdir}", "--mode=eval")
    for attempt in (lambda: model_setup.load_trained_model(config, workdir),
                    lambda: train.train_and_evaluate(config, workdir, evaluate_after=False)):
        with pytest.raises(checkpointing.DamagedCheckpointError) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message and message.startswith(f"cannot restore the checkpoint {step_dir} (")
        assert message.endswith(f"fall back to step 1: mv {step_dir} {workdir}/damaged_step_2")
        # tensorstore's own error, not orbax's wrapper (whose text is a repr of a bound method)
        assert "bound method" not in message and "TensorStore details" not in message
    # The command line: that one line, and none of the tracebacks that tensorstore reads still in
    # flight printed once the failed restore had closed orbax's event loop.
    line = one_error_line(cli)
    assert line.startswith(f"error: cannot restore the checkpoint {step_dir} (") and "bound method" not in line
    if damage == "truncated_array_file":
        assert "OUT_OF_RANGE" in line
    os.rename(step_dir, os.path.join(workdir, "damaged_step_2"))
    summary = train.train_and_evaluate(config, workdir, evaluate_after=False)
    assert summary["step"] == 3  # resumed from step 1 for max_steps_this_run=2 steps


def test_a_threshold_of_another_checkpoint_is_refused_until_recomputed(tmp_path, synthetic_data_dir):
    """After the newest step is moved aside (as the damaged-checkpoint error advises), predict and
    export refuse threshold.json, computed from that step, naming the command that recomputes it."""
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir, checkpoint_every_steps=3)  # 7 steps: 6, 7 kept
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, evaluate_after=False)
    assert evaluate.read_threshold(workdir)["checkpoint"]["step"] == 7
    os.rename(os.path.join(workdir, "checkpoints", "7"), os.path.join(workdir, "damaged_step_7"))
    folder = tmp_path / "images"
    folder.mkdir()
    image = next(iter(pipeline.test_batches(config, batch_size=1)))["image"]
    Image.fromarray(evaluate.to_uint8(image)[0]).save(folder / "a.png")
    expected = (f"{workdir}/threshold.json was computed from the checkpoint of step 7, not from the weights "
                f"of the checkpoint in use (step 6); recompute it: python -m rgpkd_jax.main --config <the "
                f"same config> --workdir {workdir} --mode threshold")
    for attempt in (lambda: predict.predict_path(config, workdir, str(folder), output_dir=str(tmp_path / "out")),
                    lambda: exporting.export_workdir(config, workdir, formats=["stablehlo"])):
        with pytest.raises(evaluate.StaleThresholdError) as error:
            attempt()
        assert str(error.value) == expected
    command = ["--config", os.path.join(REPO, "configs", "rd4ad.py:synthetic/grid,tiny"),
               f"--config.dataset.data_dir={synthetic_data_dir}", "--config.teacher.weights=random",
               f"--workdir={workdir}"]
    assert one_error_line(run_module("rgpkd_jax.main", *command, "--mode=predict", f"--input={folder}")) == (
        f"error: {expected}")
    recomputed = run_module("rgpkd_jax.main", *command, "--mode=threshold")
    assert recomputed.returncode == 0, recomputed.stderr[-3000:]
    assert "training images' scores, checkpoint of step 6" in recomputed.stdout
    assert evaluate.read_threshold(workdir)["checkpoint"]["step"] == 6
    predicted = run_module("rgpkd_jax.main", *command, "--mode=predict", f"--input={folder}")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    out = predicted.stdout.splitlines()
    assert out[0].startswith("decided with threshold of the training images: ")
    out = out[1:]
    assert "scored 1 image(s), 0 unreadable" in out[0]
    output_dir = out[0].rsplit("results in ", 1)[1]
    assert out[1:] == ["wrote:", f"  {output_dir}/predictions.json", f"  {output_dir}/predictions.csv",
                       f"  {output_dir}/*_heatmap.png (1 file(s))"]
    with open(os.path.join(output_dir, "predictions.json")) as f:
        assert json.load(f)["threshold"] == evaluate.read_threshold(workdir)["threshold"]


def test_eval_with_a_config_that_differs_from_training_names_each_conflicting_key(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    workdir = _imported_workdir(config, tmp_path)
    other = tiny_config("sk_rd4ad", data_dir=synthetic_data_dir)
    other.model.conv_impl = "xla"  # how it computes, not what it is: allowed
    with pytest.raises(ConfigError) as error:
        model_setup.load_trained_model(other, workdir)
    message = str(error.value)
    assert "\n" not in message and os.path.join(workdir, "run_info.json") in message
    assert "method='sk_rd4ad' (trained with 'rd4ad')" in message
    assert "model.skips=True (trained with False)" in message and "conv_impl" not in message
    config.model.conv_impl = "xla"
    assert model_setup.load_trained_model(config, workdir)[2] == 0


def test_a_resume_with_another_model_config_names_each_changed_key(tmp_path, synthetic_data_dir):
    """A changed loss would silently train on from the checkpoint's weights: refused."""
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    config.train.max_steps_this_run = 1
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, evaluate_after=False)
    config.model.loss, config.model.conv_impl = "mse", "xla"  # conv_impl: how it computes, allowed
    config.dataset.category = "grid+disc"  # another training split: the unified setting's union
    with pytest.raises(ConfigError) as error:
        train.train_and_evaluate(config, workdir, evaluate_after=False)
    message = str(error.value)
    assert "\n" not in message and os.path.join(workdir, "run_info.json") in message
    assert "model.loss='mse' (trained with 'cosine')" in message and "conv_impl" not in message
    assert "dataset.category='grid+disc' (trained with 'grid')" in message
    assert message.endswith("resume with the config and overrides it started with, or train in a new --workdir")


def test_eval_predict_and_export_refuse_another_image_size(tmp_path, synthetic_data_dir):
    """The threshold is a quantile of scores at the training size and scores shift with the size
    (RGPKD would rebuild its bank at the new one): another size is refused, naming both."""
    config = tiny_config("rgpkd", data_dir=synthetic_data_dir)
    workdir = _imported_workdir(config, tmp_path)
    config.dataset.image_size = 96
    expected = r"run_info.json: dataset.image_size=96 \(trained with 64\); use the config and overrides"
    for attempt in (lambda: model_setup.load_trained_model(config, workdir),  # predict's and export's
                    lambda: evaluate.evaluate_checkpoint(config, workdir)):
        with pytest.raises(ConfigError, match=expected) as error:
            attempt()
        assert "\n" not in str(error.value)


def test_a_checkpoint_without_a_teacher_record_is_one_error(tmp_path, synthetic_data_dir):
    """Checkpoints written before the teacher was left out hold no `teacher` item."""
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    workdir = _imported_workdir(config, tmp_path)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "0", "teacher"))
    with pytest.raises(checkpointing.DamagedCheckpointError, match=r"checkpoints/0 records no teacher.*new --workdir$"):
        model_setup.load_trained_model(config, workdir)
