"""Two runs that find one dataset unprepared: one prepares it, the other waits and reads it."""

import fcntl
import threading

import ml_collections

import rgpkd_jax.data as data_lib
from rgpkd_jax.data import pipeline


def test_two_runs_preparing_one_dataset_prepare_it_once(tmp_path, monkeypatch):
    """The first run is held inside its prepare until the second has arrived: waiting for the
    lock (with it) or preparing too (without it, which this test must see)."""
    config = ml_collections.ConfigDict({"dataset": {
        "name": "synthetic", "category": "disc", "data_dir": str(tmp_path / "tfds"), "manual_dir": None}})
    prepare, flock = data_lib.prepare, fcntl.flock
    preparers, second_arrived = [], threading.Event()

    def held_prepare(builder, manual_dir=None, **kwargs):
        preparers.append(threading.current_thread().name)
        if threading.current_thread().name == "first":
            assert second_arrived.wait(timeout=120), "the second run never arrived"
        else:
            second_arrived.set()
        return prepare(builder, manual_dir, **kwargs)

    def noted_flock(fd, operation):
        if threading.current_thread().name == "second" and not operation & fcntl.LOCK_NB:
            second_arrived.set()  # about to wait for the first
        return flock(fd, operation)

    monkeypatch.setattr(data_lib, "prepare", held_prepare)
    monkeypatch.setattr(fcntl, "flock", noted_flock)
    sizes, errors = {}, []

    def run():
        try:
            sizes[threading.current_thread().name] = len(pipeline.data_source(config, "train"))
        except Exception as e:  # reported below, with the thread's name
            errors.append((threading.current_thread().name, e))

    first, second = (threading.Thread(target=run, name=name) for name in ("first", "second"))
    first.start()
    while not preparers and first.is_alive():
        first.join(timeout=0.05)
    second.start()
    for thread in (first, second):
        thread.join(timeout=300)
    assert not errors and preparers == ["first"], (preparers, errors)
    assert sizes["first"] == sizes["second"] > 0
