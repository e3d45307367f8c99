"""What every PyTorch peer shares: where it runs, its versions, its input tensors, its FLOP count,
its train step's shape and its peak device memory. torch is optional (the `peers` extra): it is
imported only here and in the peers, inside the functions that use it."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np


def torch_device() -> str:
    """'cuda' when our side runs on a GPU (jax's default backend) and torch sees one, else 'cpu'."""
    import torch
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_versions() -> dict[str, str]:
    """torch's version and where the peers run."""
    import torch
    device = torch_device()
    return {"torch": torch.__version__, "torch_device": device,
            **({"torch_gpu": torch.cuda.get_device_name()} if device == "cuda" else
               {"torch_num_threads": str(torch.get_num_threads())})}


def nchw_tensor(images_nhwc: np.ndarray, device: str):
    """A batch as torch peers consume it: an NCHW tensor on `device` (made outside timed regions)."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).to(device)


def optimiser_step(optimizer, loss: Callable[[], object]) -> float:
    """One step as the peers' training loops take it: gradients cleared, `loss()` (the forward)
    back-propagated, the update, then `loss.item()` (which synchronises, as their logging does)."""
    optimizer.zero_grad(set_to_none=True)
    value = loss()
    value.backward()
    optimizer.step()
    return value.item()


def count_flops(call: Callable[[], object]) -> float:
    """FLOPs of `call()`, counted by torch's FlopCounterMode (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        call()
    return float(counter.get_total_flops())


def peak_memory_mib() -> tuple[float, str] | None:
    """A peer's peak device memory (MiB) on CUDA, or None on the CPU (use the process RSS)."""
    import torch
    if torch_device() != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated"
