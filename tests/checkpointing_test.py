"""Workdir checkpoints: importing a model trained elsewhere, a kill during an asynchronous save,
data positions across process layouts."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import orbax.checkpoint as ocp
import pytest

from rgpkd_jax import checkpointing
from tests.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_refuses_a_workdir_that_already_has_checkpoints(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    model, _ = checkpointing.setup_model(config)
    checkpointing.save_imported_model(model, config, str(tmp_path))
    with pytest.raises(FileExistsError, match="empty --workdir"):
        checkpointing.save_imported_model(model, config, str(tmp_path))


_KILLED_DURING_SAVE = textwrap.dedent("""
    import os, sys
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from rgpkd_jax import checkpointing
    from tests.helpers import tiny_config
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
