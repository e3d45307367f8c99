"""A PyTorch peer of `benchmarks.speed`: anomalib's ReverseDistillation, driven without Lightning.

torch and anomalib are imported only when the peer is asked for (`--peers=anomalib`; install them
with the `peers` extra, e.g. `pip install -e '.[peers]'`).
What runs is what anomalib's Lightning module runs, minus the framework around it:

* train step: `ReverseDistillationModel` in train mode (its timm encoder runs under `no_grad`),
  `ReverseDistillationLoss`, `loss.backward()`, `Adam(decoder + bottleneck, lr 0.005,
  betas (0.5, 0.99))` as `ReverseDistillationModel.configure_optimizers`, then `loss.item()`
  (Lightning logs the loss every step, which synchronises);
* inference: eval mode under `torch.inference_mode()`, which returns the anomaly map (sum of
  per-level 1 - cos, bilinear align_corners upsampling, kornia Gaussian sigma 4) and the score;
* metrics: anomalib's AUROC (image and pixel) and AUPRO (fpr_limit 0.3) metric classes.

The backbone is built with `pre_trained=False` (random weights, no download): timings do not
depend on the weights. The peer runs on the device ours runs on: CUDA when jax's default backend
is a GPU (and torch sees one), else the CPU.
"""

from __future__ import annotations

import numpy as np

from benchmarks.speed import torch_peer

REQUIRED = ("torch", "anomalib")


def version_info() -> dict[str, str]:
    import anomalib
    return {"anomalib": anomalib.__version__, **torch_peer.torch_versions()}


class ReverseDistillationPeer:
    """anomalib's ReverseDistillation at one image size, on random weights, on the CPU."""

    def __init__(self, arch: str, image_size: int, seed: int = 0):
        import torch
        from anomalib.models.image.reverse_distillation.anomaly_map import AnomalyMapGenerationMode
        from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
        from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel

        self.device = torch_peer.torch_device()
        torch.manual_seed(seed)
        self.model = ReverseDistillationModel(
            backbone=arch, input_size=(image_size, image_size),
            layers=["layer1", "layer2", "layer3"],
            anomaly_map_mode=AnomalyMapGenerationMode.ADD,  # what its Lightning module sets
            pre_trained=False).to(self.device)
        self.loss = ReverseDistillationLoss()
        self.optimizer = torch.optim.Adam(
            params=list(self.model.decoder.parameters()) + list(self.model.bottleneck.parameters()),
            lr=0.005, betas=(0.5, 0.99))

    def prepare(self, images_nhwc: np.ndarray):
        """The batch as the peer consumes it (NCHW torch tensor on its device), made outside the
        timed region."""
        return torch_peer.nchw_tensor(images_nhwc, self.device)

    def train_step(self, images) -> float:
        self.model.train()
        return torch_peer.optimiser_step(self.optimizer, lambda: self.loss(*self.model(images)))

    def maps_and_scores(self, images) -> tuple[np.ndarray, np.ndarray]:
        import torch
        self.model.eval()
        with torch.inference_mode():
            out = self.model(images)
        return out.anomaly_map[:, 0].cpu().numpy(), out.pred_score.reshape(-1).cpu().numpy()

    def evaluate(self, images_nhwc: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                 batch_size: int) -> dict[str, float]:
        """Forward + maps over the test set in batches, then image AUROC, pixel AUROC and AUPRO."""
        import torch
        from anomalib.metrics.aupro import _AUPRO
        from anomalib.metrics.auroc import _AUROC

        image_auroc, pixel_auroc, aupro = _AUROC(), _AUROC(), _AUPRO(fpr_limit=0.3)
        for start in range(0, len(images_nhwc), batch_size):
            stop = start + batch_size
            maps, scores = self.maps_and_scores(self.prepare(images_nhwc[start:stop]))
            maps_t = torch.from_numpy(maps)  # (B, H, W): _AUPRO adds the channel axis itself
            masks_t = torch.from_numpy(masks[start:stop]).to(torch.int64)
            image_auroc.update(torch.from_numpy(scores), torch.from_numpy(labels[start:stop]).to(torch.int64))
            pixel_auroc.update(maps_t, masks_t)
            aupro.update(maps_t, masks_t)
        return {"image_auroc": float(image_auroc.compute()), "pixel_auroc": float(pixel_auroc.compute()),
                "aupro": float(aupro.compute())}

    def train_flops(self, images) -> float:
        """FLOPs of one train step, counted by torch's FlopCounterMode (matmuls and convolutions)."""
        return torch_peer.count_flops(lambda: self.train_step(images))


def anomalib_aupro(maps: np.ndarray, masks: np.ndarray) -> float:
    """anomalib's AUPRO alone on given (N, H, W) maps and masks."""
    import torch
    from anomalib.metrics.aupro import _AUPRO
    metric = _AUPRO(fpr_limit=0.3)
    metric.update(torch.from_numpy(maps), torch.from_numpy(masks).to(torch.int64))  # (N, H, W)
    return float(metric.compute())


def import_all() -> None:
    """Imports everything the peer uses (the memory probe's baseline is taken after this)."""
    import anomalib.metrics.aupro  # noqa: F401
    import anomalib.metrics.auroc  # noqa: F401
    import anomalib.models.image.reverse_distillation.torch_model  # noqa: F401
    import torch.utils.flop_counter  # noqa: F401
