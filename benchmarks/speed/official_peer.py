"""The official RD4AD code as a peer of `benchmarks.speed` (`--peers=official --official_dir=PATH`).

PATH is a checkout of https://github.com/hq-deng/RD4AD that the user provides; this repository
never vendors nor downloads it, and CI runs a stand-in with its interface instead
(`tests/torch_rd4ad.py`). Its modules are imported from PATH under their own names (`resnet`,
`de_resnet`, `main`, and the `test`, `dataset` that `main.py` imports), with PATH first on
`sys.path` only while importing and any modules of those names imported before (Python's own
`test` package) put back afterwards. What runs is what the official code runs (docs/reference.md
§2.3-2.5), with random weights (`pretrained=False`; no download):

* train step: `encoder, bn = <arch>(pretrained=False)`, `decoder = de_<arch>(pretrained=False)`,
  the encoder in eval mode, `bn` and the decoder in train mode, the official `loss_fucntion`
  (spelled so), `Adam(decoder + bn, lr 0.005, betas (0.5, 0.999))`, then `loss.item()`;
* inference: the same forward in eval mode under `torch.no_grad()`, then per image the official
  `test.cal_anomaly_map` (levels added) and scipy's `gaussian_filter(sigma=4)`, the score being
  the map's maximum, as the official `evaluation` does. The official evaluation feeds one image
  at a time, and `cal_anomaly_map` reads only the first image of what it gets: the forward here
  takes the whole batch (the same batch ours gets), the maps are made image by image.

The peer runs where anomalib's does (`torch_peer.torch_device`): CUDA when jax's default backend
is a GPU, else the CPU.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import numpy as np
from scipy.ndimage import gaussian_filter

from benchmarks import optional
from benchmarks.speed import torch_peer
from rgpkd_jax import provenance

REQUIRED = ("torch",)  # what this module itself needs beyond ours; main.py and test.py import more
REQUIRED_FILES = ("resnet.py", "de_resnet.py", "main.py", "test.py")
# Module names the official files take (main.py imports dataset and test).
OFFICIAL_MODULES = ("resnet", "de_resnet", "dataset", "test", "main")
CLONE_HINT = "git clone https://github.com/hq-deng/RD4AD"


class OfficialCodeError(ValueError):
    """The official checkout cannot be used (flag missing, files missing, a package main.py needs)."""


def check_dir(official_dir: str | None) -> str:
    """The absolute path of `official_dir` if it holds the official files; else OfficialCodeError."""
    if not official_dir:
        raise OfficialCodeError(f"--official_dir: required with --peers=official; give a checkout of "
                                f"the official RD4AD code ({CLONE_HINT})")
    path = os.path.abspath(official_dir)
    missing = [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise OfficialCodeError(f"--official_dir={official_dir}: no {', '.join(missing)} there; give a "
                                f"checkout of the official RD4AD code ({CLONE_HINT})")
    return path


def import_official(official_dir: str | None) -> types.SimpleNamespace:
    """The official modules from `official_dir`: resnet, de_resnet, main (loss) and test (maps)."""
    path = check_dir(official_dir)
    missing = optional.missing(REQUIRED)
    if missing:
        raise OfficialCodeError(f"--peers=official: missing packages {', '.join(missing)}; "
                                f"install them (pip install -e '.[peers]')")
    before = {name: sys.modules.pop(name) for name in OFFICIAL_MODULES if name in sys.modules}
    sys.path.insert(0, path)
    try:
        main = importlib.import_module("main")
        code = types.SimpleNamespace(
            path=path, resnet=importlib.import_module("resnet"), de_resnet=importlib.import_module("de_resnet"),
            main=main, test=importlib.import_module("test"))
    except ModuleNotFoundError as error:
        package = (error.name or "?").split(".")[0]
        raise OfficialCodeError(f"--official_dir={official_dir}: the official code imports {package!r}, "
                                f"which is not installed here; pip install it (see benchmarks/NOTES.md)") from None
    finally:
        sys.path.remove(path)
        for name in OFFICIAL_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(before)
    for module, attribute in ((code.main, "loss_fucntion"), (code.test, "cal_anomaly_map")):
        if not hasattr(module, attribute):
            raise OfficialCodeError(f"--official_dir={official_dir}: {module.__name__}.py has no "
                                    f"{attribute}; give a checkout of the official RD4AD code ({CLONE_HINT})")
    return code


def version_info(code: types.SimpleNamespace) -> dict[str, str]:
    return {"official_rd4ad": provenance.git_commit(code.path), **torch_peer.torch_versions()}


def label(code: types.SimpleNamespace) -> str:
    return f"official RD4AD @ {provenance.git_commit(code.path)}"


def import_all() -> None:
    """What the peer uses besides the official modules (imported when the peer is loaded)."""
    import torch.utils.flop_counter  # noqa: F401


class OfficialReverseDistillation:
    """The official encoder, OCBE (`bn`) and decoder of `arch` at one image size, random weights."""

    def __init__(self, code: types.SimpleNamespace, arch: str, image_size: int, seed: int = 0):
        import torch
        self.code, self.image_size, self.device = code, image_size, torch_peer.torch_device()
        torch.manual_seed(seed)
        encoder, bn = getattr(code.resnet, arch)(pretrained=False)
        self.encoder, self.bn = encoder.to(self.device), bn.to(self.device)
        self.encoder.eval()
        self.decoder = getattr(code.de_resnet, f"de_{arch}")(pretrained=False).to(self.device)
        self.optimizer = torch.optim.Adam(list(self.decoder.parameters()) + list(self.bn.parameters()),
                                          lr=0.005, betas=(0.5, 0.999))

    def prepare(self, images_nhwc: np.ndarray):
        return torch_peer.nchw_tensor(images_nhwc, self.device)

    def train_step(self, images) -> float:
        self.bn.train()
        self.decoder.train()

        def loss():
            inputs = self.encoder(images)
            return self.code.main.loss_fucntion(inputs, self.decoder(self.bn(inputs)))
        return torch_peer.optimiser_step(self.optimizer, loss)

    def maps_and_scores(self, images) -> tuple[np.ndarray, np.ndarray]:
        import torch
        self.bn.eval()
        self.decoder.eval()
        with torch.no_grad():
            inputs = self.encoder(images)
            outputs = self.decoder(self.bn(inputs))
            maps = []
            for i in range(images.shape[0]):
                anomaly_map, _ = self.code.test.cal_anomaly_map(
                    [f[i:i + 1] for f in inputs], [f[i:i + 1] for f in outputs], images.shape[-1], amap_mode="a")
                maps.append(gaussian_filter(anomaly_map, sigma=4))
        maps = np.stack(maps)
        return maps, maps.max(axis=(1, 2))

    def train_flops(self, images) -> float:
        return torch_peer.count_flops(lambda: self.train_step(images))
