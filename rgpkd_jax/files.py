"""Writing files so that a reader never sees half of one: write a unique temporary name, then rename.

Every output of the library and the benchmarks (JSON, CSV, Markdown, PNG) goes through
:func:`atomic_write`, every folder written as a whole (a converted teacher, an extracted dataset)
through :func:`staged_dir`. The temporary name is unique per call (not per path), so two processes
that write the same file or folder never share a temporary. It imports no more than numpy: the
JAX-free deployed predictor (`rgpkd_jax.deploy`) writes through it too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Yields a file open for writing; on success it replaces ``path`` whole, on error it is deleted.

    The parent folder must exist. ``mode`` is ``"w"`` or ``"wb"`` (``newline=""`` etc. go to open).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def temporary_dir_beside(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a new empty folder ``.<name>.<random>.tmp`` beside ``path`` (unique per call, on the
    same file system, so what it holds moves to ``path``'s folder by rename); it is removed with
    whatever it still holds when the block ends, raised or not. The parent folder must exist."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=directory))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(final_dir: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``final_dir`` to fill: renamed to ``final_dir`` when
    the block succeeds, removed when it raises. A reader never sees a half-filled ``final_dir``,
    and a crash leaves at most a hidden ``.<name>.<random>.tmp`` folder. Parent folders are created.

    If a non-empty ``final_dir`` exists when the block ends (another process finished first):
    ``replace=False`` keeps it and discards ours (the race of two writers of the same content,
    e.g. two runs extracting one archive, is harmless, and nobody reading it loses it);
    ``replace=True`` renames it aside (``.<name>.<random>.old``), renames ours in and then deletes
    the old one, so ``final_dir`` is missing between two renames but never half-written, and of
    several replacing writers the last to finish wins.
    """
    final_dir = Path(final_dir).absolute()
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    with temporary_dir_beside(final_dir) as staging:
        yield staging
        _move_into_place(staging, final_dir, replace=replace)


def _move_into_place(staging: Path, final_dir: Path, *, replace: bool) -> None:
    """Renames ``staging`` to ``final_dir``, or leaves it where an existing one is kept."""
    asides = []
    try:
        while True:
            try:
                os.rename(staging, final_dir)
                return
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if not replace:
                return
            aside = final_dir.with_name(f".{final_dir.name}.{uuid.uuid4().hex[:12]}.old")
            with contextlib.suppress(FileNotFoundError):  # another writer moved it aside first
                os.rename(final_dir, aside)
                asides.append(aside)
    finally:
        for aside in asides:
            shutil.rmtree(aside, ignore_errors=True)


def json_default(o: Any) -> Any:
    """numpy scalars and arrays as python values; anything else as its string."""
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, atomically (numpy values converted)."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, default=json_default)
        f.write("\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def read_json_lines(path: str | os.PathLike) -> list[Any]:
    """The objects of a JSON-lines file (one per non-empty line); [] if it does not exist."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes (any :mod:`hashlib` name), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_writable_dir(directory: str | os.PathLike, *, what: str = "output folder") -> None:
    """Creates ``directory`` and writes (and deletes) a file in it: a run checks the folder its
    results go to before its heavy work, not after. Raises OSError naming the folder."""
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_check."):
            pass
    except OSError as e:
        raise OSError(e.errno, f"cannot write to the {what} {directory} ({e.strerror or e}); "
                               f"choose a writable folder or free space on its disk") from e


@contextlib.contextmanager
def failure_recorded(what: str, failures: dict[str, str]) -> Iterator[None]:
    """Records an OSError of the block as ``failures[what] = reason`` instead of raising it: a
    write that fails at the end of a long computation must not lose the results in memory."""
    try:
        yield
    except OSError as e:
        failures[what] = e.strerror or str(e)


@contextlib.contextmanager
def nothing_kept_on_write_failure(directory: str, what: str) -> Iterator[None]:
    """When the block fails with an OSError (a disk that fills midway), removes the files it added
    to ``directory`` (and the folder, if that leaves it empty) and raises one error naming the
    folder and the cause: a part of the outputs is never left to be taken for all of them."""
    before = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    try:
        yield
    except OSError as e:
        added = set(os.listdir(directory)) - before if os.path.isdir(directory) else set()
        for name in added:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))
        with contextlib.suppress(OSError):  # kept when it holds anything else
            os.rmdir(directory)
        raise OSError(f"could not write {what} into {directory} ({e.strerror or e}); the files written "
                      "there so far were removed: free some space (or choose another folder) and rerun") from e


@contextlib.contextmanager
def no_new_empty_folders_on_failure(*folders: str | os.PathLike) -> Iterator[None]:
    """When the block raises, removes those of ``folders`` that it created and left empty
    (deepest first; ``os.rmdir`` removes nothing else): an error before any output leaves no
    empty workdir or data folder behind."""
    new = [os.path.abspath(f) for f in folders if not os.path.exists(f)]
    try:
        yield
    except BaseException:
        for folder in sorted(new, key=lambda f: f.count(os.sep), reverse=True):
            with contextlib.suppress(OSError):  # absent, or not empty: kept
                os.rmdir(folder)
        raise


def new_run_dir(parent: str) -> str:
    """Creates and returns ``parent/<UTC time>`` (``-2``, ``-3``... when taken): each run its own
    folder, so a rerun neither overwrites the last one's results nor mixes its heat maps with them."""
    os.makedirs(parent, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%SZ", time.gmtime())
    for n in itertools.count(1):
        path = os.path.join(parent, stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path
