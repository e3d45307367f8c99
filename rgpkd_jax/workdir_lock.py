"""One run at a time per workdir: a lock file holding the owner's pid, host and start time.

Two trainings into one workdir interleave their checkpoints and metric records; the second
is refused in one line instead (docs/architecture.md, Processes: process 0 takes the lock).
A run killed without cleanup (SIGKILL, a crash) leaves its lock behind: a lock whose pid is no
longer running on this host is taken over, by one run at a time (`_take_over`). A lock from
another host cannot be checked and is reported with its host, so that the user removes it once
that run has ended. With many processes, process 0 takes the lock and all learn whether it was
refused (`hold`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from typing import Iterator

from absl import logging

from rgpkd_jax import files, sharding

LOCK_FILE = "workdir.lock"


class WorkdirBusyError(RuntimeError):
    """Another live run holds the workdir's lock."""


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (Linux /proc; None elsewhere): a pid
    recycled by a later process (a restarted container's pid 1) has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, counted after the name
    except (OSError, ValueError, IndexError):
        return None


def _is_running(holder: dict) -> bool:
    """Whether the holder's process (of this host) still runs."""
    pid = holder["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    recorded, current = holder.get("pid_start"), _start_ticks(pid)
    return recorded is None or current is None or recorded == current


def _read_holder(path: str) -> dict | None:
    """The holder's record; None when the file vanished, {} when it cannot be parsed."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # being written right now, or damaged
        return {}
    return holder if isinstance(holder, dict) else {}


def _create(path: str, record: dict) -> bool:
    """Creates the lock file holding ``record``; False when it exists (O_EXCL: one creator wins)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
    except OSError:
        os.remove(path)
        raise
    return True


def _take_over(path: str, stale: dict, record: dict) -> bool:
    """Replaces the lock ``stale`` (of a dead process) by ``record``; False when another run is
    taking it over or already did. Two runs that found the same stale lock would each remove it,
    the later one removing the other's new lock; so only the creator of ``<lock>.takeover``
    (O_EXCL) replaces it, and only if it still holds ``stale``. A takeover file left by a taker
    that died is removed, to be retried."""
    guard = path + ".takeover"
    if not _create(guard, record):
        taker = _read_holder(guard)
        if taker and taker.get("host") == record["host"] and isinstance(taker.get("pid"), int) \
                and not _is_running(taker):
            with contextlib.suppress(FileNotFoundError):
                os.remove(guard)
        return False
    try:
        if _read_holder(path) == stale:
            os.remove(path)
        return _create(path, record)
    finally:
        os.remove(guard)


def acquire(workdir: str, mode: str) -> dict:
    """Takes ``<workdir>/workdir.lock`` for this process; returns the record it wrote.

    Raises :class:`WorkdirBusyError` naming the holder when a live run has it; a lock left by a
    dead process of this host is replaced, with a warning. Creating the lock first proves the
    workdir writable (OSError naming it), before any heavy work.
    """
    files.ensure_writable_dir(workdir, what="workdir")
    path = os.path.join(workdir, LOCK_FILE)
    record = {"pid": os.getpid(), "pid_start": _start_ticks(os.getpid()), "host": socket.gethostname(),
              "mode": mode, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):  # the holder may release (or a stale lock be removed) between the steps
        if _create(path, record):
            return record
        holder = _read_holder(path)
        if holder is None:
            continue
        pid, host = holder.get("pid"), holder.get("host")
        if host == record["host"] and isinstance(pid, int) and not _is_running(holder):
            logging.warning("taking over %s: its process %d (%s, started %s) is no longer running",
                            path, pid, holder.get("mode", "?"), holder.get("started", "?"))
            if _take_over(path, holder, record):
                return record
            continue
        raise WorkdirBusyError(
            f"the workdir {workdir} is in use by pid {pid if pid is not None else '?'} on host "
            f"{host or '?'} ({holder.get('mode', '?')}, started {holder.get('started', '?')}); wait "
            f"for it to end or use another --workdir (remove {path} only if that run has ended)")
    raise WorkdirBusyError(f"could not take the lock {path}: other runs keep taking it; retry")


def release(workdir: str, record: dict) -> None:
    """Removes the lock if it is still ours (not taken over after we were presumed dead)."""
    path = os.path.join(workdir, LOCK_FILE)
    if _read_holder(path) == record:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def hold(workdir: str, mode: str, *, enabled: bool = True) -> Iterator[None]:
    """The lock held for the ``with`` block by the process(es) ``enabled`` (process 0). All
    processes call it together and learn whether it was refused, so that a refused run stops every
    process with the same error instead of leaving the others waiting for process 0 in their first
    collective (docs/multihost.md)."""
    record, refusal = None, None
    if enabled:
        try:
            record = acquire(workdir, mode)
        except (WorkdirBusyError, OSError) as e:
            refusal = e
    outcomes = sharding.allgather_json(None if refusal is None else [isinstance(refusal, OSError), str(refusal)])
    if refusal is not None:
        raise refusal
    if refused := next((outcome for outcome in outcomes if outcome), None):
        if record is not None:
            release(workdir, record)
        is_os_error, message = refused
        raise (OSError if is_os_error else WorkdirBusyError)(message)
    try:
        yield
    finally:
        if record is not None:
            release(workdir, record)
