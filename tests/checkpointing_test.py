"""Workdir checkpoints: importing a model trained elsewhere."""

import pytest

from rgpkd_jax import checkpointing
from tests.helpers import tiny_config


def test_import_refuses_a_workdir_that_already_has_checkpoints(tmp_path, synthetic_data_dir):
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    model, _ = checkpointing.setup_model(config)
    checkpointing.save_imported_model(model, config, str(tmp_path))
    with pytest.raises(FileExistsError, match="empty --workdir"):
        checkpointing.save_imported_model(model, config, str(tmp_path))
