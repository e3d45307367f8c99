"""`python -m rgpkd_jax.convert --official_rd4ad`: an official checkpoint becomes a workdir that
--mode=eval evaluates, with the official modules' outputs (torch reference built from docs/reference.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from rgpkd_jax import evaluate, model_setup
from tests.helpers import REPO, import_oracle, tiny_config
torch = import_oracle("torch")  # the official modules are built in torch

from tests.models.rd4ad_vs_reference_test import (TorchDecoder, TorchOCBE18, _nchw, _nhwc,
                                                    _randomise, _teacher_taps)


def test_official_checkpoint_imports_into_a_workdir_and_evaluates(tmp_path, synthetic_data_dir):
    bn, decoder = _randomise(TorchOCBE18(), 0), _randomise(TorchDecoder(False, (2, 2, 2)), 1)
    checkpoint = tmp_path / "official.pth"
    torch.save({"bn": bn.state_dict(), "decoder": decoder.state_dict()}, checkpoint)
    workdir = tmp_path / "imported"
    config = tiny_config("rd4ad", data_dir=synthetic_data_dir)
    args = [sys.executable, "-m", "rgpkd_jax.convert", f"--official_rd4ad={checkpoint}",
            f"--workdir={workdir}", f"--config={REPO}/configs/rd4ad.py:synthetic/grid,tiny",
            "--config.teacher.weights=random", f"--config.dataset.data_dir={synthetic_data_dir}"]
    result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--mode eval" in result.stdout
    assert os.path.exists(workdir / evaluate.THRESHOLD_FILE)

    model, _, step = model_setup.load_trained_model(config, str(workdir))
    assert step == 0
    taps = _teacher_taps()
    with torch.no_grad():
        expected = decoder(bn([_nchw(t) for t in taps]))
    ours = model.decoder(model.bn(taps, train=False), taps, train=False)
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(np.asarray(a), _nhwc(b), rtol=1e-4, atol=1e-4 * np.abs(_nhwc(b)).max())

    metrics = evaluate.evaluate_checkpoint(config, str(workdir))["metrics"]
    assert 0.0 <= metrics["image_auroc"] <= 1.0

