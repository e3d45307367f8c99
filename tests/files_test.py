"""Atomic writes: a reader sees the old file or the new one, never a half; nothing is left behind."""

import json
import os
import time

import numpy as np
import pytest

from rgpkd_jax import files


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    files.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError, match="disk died"):
        with files.atomic_write(path) as f:
            f.write('{"a": 2, "trunc')
            raise RuntimeError("disk died")
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]


def test_concurrent_writers_use_distinct_temporaries(tmp_path):
    path = tmp_path / "out.txt"
    with files.atomic_write(path) as first, files.atomic_write(path) as second:
        assert first.name != second.name
        first.write("first")
        second.write("second")
    assert path.read_text() == "first"  # the last rename wins, whole
    assert os.listdir(tmp_path) == ["out.txt"]


def test_json_holds_numpy_values(tmp_path):
    files.write_json(tmp_path / "x.json", {"f": np.float32(0.5), "i": np.int64(3), "a": np.arange(3)})
    assert json.loads((tmp_path / "x.json").read_text()) == {"f": 0.5, "i": 3, "a": [0, 1, 2]}


def test_binary_mode_and_bad_mode(tmp_path):
    with files.atomic_write(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode"):
        with files.atomic_write(tmp_path / "c", "a"):
            pass


def test_each_run_dir_is_new_even_within_one_second(tmp_path, monkeypatch):
    """predict and the deployed predictor give each run its own folder: a rerun overwrites nothing."""
    epoch = time.gmtime(0)
    monkeypatch.setattr(files.time, "gmtime", lambda *seconds: epoch)  # every call in one second
    made = [files.new_run_dir(str(tmp_path / "predictions")) for _ in range(3)]
    assert [os.path.basename(p) for p in made] == ["19700101-000000Z", "19700101-000000Z-2", "19700101-000000Z-3"]
    assert all(os.path.isdir(p) and not os.listdir(p) for p in made)
