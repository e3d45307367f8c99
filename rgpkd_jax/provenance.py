"""What a number was computed with: package versions, the code's commit, the devices.

Every training run records it in ``run_info.json`` and every complexity measurement in
``complexity.json``, so that the benchmark report (docs/report.md) names the hardware and software
beside each figure; exported models carry the versions too.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

import jax

# The packages whose versions change what a run computes or how fast.
PACKAGES = ("rgpkd_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed version of each package, None for one that is not installed."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit(path: str) -> str:
    """The commit of the git checkout holding ``path`` (12 hex digits, '+ local changes' when its
    tracked files differ), or 'unknown commit' (an installed wheel, no git)."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
    head = git("rev-parse", "HEAD")
    if head is None or head.returncode:
        return "unknown commit"
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = status is not None and bool(status.stdout.strip())
    return head.stdout.strip()[:12] + (" + local changes" if dirty else "")


def cpu_model() -> str:
    """The host CPU's model name (Linux: /proc/cpuinfo), else the machine type: on a CPU backend the
    device kind is only 'cpu'."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """The devices (kind and count), the host CPU, Python, the packages' versions and this code's commit."""
    devices = jax.devices()
    return {
        "device": devices[0].device_kind, "platform": devices[0].platform, "device_count": len(devices),
        "process_count": jax.process_count(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": package_versions(*PACKAGES),
        "commit": git_commit(os.path.dirname(os.path.abspath(__file__))),
    }
