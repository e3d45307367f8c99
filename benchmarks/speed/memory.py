"""Memory readings of this process and its device, shared by speed, complexity and export."""

from __future__ import annotations

import os
import resource
import sys

import jax


def rss_mib() -> float:
    """This process's resident memory now (MiB; Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, MiB). Not ru_maxrss where /proc exists: Linux carries that
    over from the parent across fork + exec, so a process started by a large benchmark or
    leaderboard process would report its parent's peak. Elsewhere (macOS) ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except FileNotFoundError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def device_peak_mib() -> tuple[float, str] | None:
    """The first device's peak allocation (MiB) where it reports one (GPU/TPU), else None."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20, "jax memory_stats peak_bytes_in_use"


def peak_memory() -> tuple[int, str]:
    """(bytes, kind): the device's peak allocation where reported (GPU/TPU), else the process's
    peak RSS (CPU; includes the Python and JAX runtime)."""
    device = device_peak_mib()
    if device is not None:
        return int(device[0] * 2**20), "device peak_bytes_in_use"
    return int(peak_rss_mib() * 2**20), "process peak RSS (CPU)"
