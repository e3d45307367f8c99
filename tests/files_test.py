"""Atomic writes and staged folders: a reader sees the old file or folder or the new one, never a
half; nothing is left behind."""

import json
import os
import threading
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


def _fill(folder, writer: str, count: int = 5) -> None:
    for i in range(count):
        (folder / f"part{i}").write_text(writer)


def _writers(folder) -> set[str]:
    return {p.read_text() for p in folder.iterdir()}


def test_a_failed_staging_leaves_nothing(tmp_path):
    final = tmp_path / "parent" / "final"
    with pytest.raises(RuntimeError, match="extraction died"):
        with files.staged_dir(final) as staging:
            _fill(staging, "mine")
            raise RuntimeError("extraction died")
    assert os.listdir(tmp_path / "parent") == []


def test_a_failed_replacing_staging_keeps_the_old_folder(tmp_path):
    final = tmp_path / "final"
    with files.staged_dir(final) as staging:
        _fill(staging, "old")
    with pytest.raises(RuntimeError):
        with files.staged_dir(final, replace=True) as staging:
            _fill(staging, "new", count=2)
            raise RuntimeError("conversion died")
    assert sorted(os.listdir(tmp_path)) == ["final"] and _writers(final) == {"old"}
    assert len(os.listdir(final)) == 5


@pytest.mark.parametrize("replace, kept", [(False, "second"), (True, "first")])
def test_two_stagings_of_one_folder_keep_the_first_or_the_last_finished(tmp_path, replace, kept):
    """``second`` finishes first: without replace its folder stays, with replace ``first``'s wins."""
    final = tmp_path / "final"
    with files.staged_dir(final, replace=replace) as first, files.staged_dir(final, replace=replace) as second:
        assert first != second
        _fill(first, "first")
        _fill(second, "second")
    assert os.listdir(tmp_path) == ["final"]
    assert _writers(final) == {kept} and len(os.listdir(final)) == 5


@pytest.mark.parametrize("replace", [False, True])
def test_concurrent_stagings_never_collide_and_leave_one_whole_folder(tmp_path, replace):
    """Eight threads stage the same folder at once (all of them are inside the block together):
    none fails, the folder holds exactly one writer's complete files, and no temporary is left."""
    final = tmp_path / "final"
    writers = 8
    together = threading.Barrier(writers, timeout=60)
    errors = []

    def stage(writer: str) -> None:
        try:
            with files.staged_dir(final, replace=replace) as staging:
                _fill(staging, writer)
                together.wait()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=stage, args=(f"writer{i}",)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert os.listdir(tmp_path) == ["final"]
    assert len(_writers(final)) == 1 and len(os.listdir(final)) == 5


def test_temporary_dir_beside_is_removed_after_use(tmp_path):
    target = tmp_path / "model.onnx"
    with files.temporary_dir_beside(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".model.onnx.")
        (temporary / "model.onnx").write_text("graph")
        os.replace(temporary / "model.onnx", target)
    assert os.listdir(tmp_path) == ["model.onnx"]
