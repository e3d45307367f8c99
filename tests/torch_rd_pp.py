"""PyTorch modules and losses in the official RD++ structure, under its key names, written here from
docs/reference.md §11 (not the official code): the projection layer and the training objective that
`tests/models/rd_pp_vs_reference_test.py` compares with ours. The encoder, OCBE and decoder are
RD4AD's (`tests/torch_rd4ad.py`). Needs torch and geomloss: import it after
`tests.helpers.import_oracle` has checked for them."""

import geomloss
import torch
from torch import nn

from tests.torch_rd4ad import standin_loss as flattened_cosine_loss


class TorchProjLayer(nn.Module):
    """``proj`` = [conv, IN, LeakyReLU] x 4 with widths C -> C/2 -> C/4 -> C/2 -> C: convs 3x3 with
    bias at indices 0, 3, 6, 9; affine-free InstanceNorm2d; LeakyReLU slope 0.01."""

    def __init__(self, channels):
        super().__init__()
        widths = (channels, channels // 2, channels // 4, channels // 2, channels)
        layers = []
        for i, o in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(i, o, 3, padding=1), nn.InstanceNorm2d(o), nn.LeakyReLU()]
        self.proj = nn.Sequential(*layers)

    def forward(self, x):
        return self.proj(x)


class TorchMultiProjection(nn.Module):
    """proj_a, proj_b, proj_c over the three teacher levels of ``channels``."""

    def __init__(self, channels=(64, 128, 256)):
        super().__init__()
        self.proj_a, self.proj_b, self.proj_c = (TorchProjLayer(c) for c in channels)

    def forward(self, features):
        return [self.proj_a(features[0]), self.proj_b(features[1]), self.proj_c(features[2])]


SINKHORN = geomloss.SamplesLoss(loss="sinkhorn", p=2, blur=0.05, diameter=10000000, scaling=0.95, debias=True)


def ssot(projected, permutation):
    """Per level: Sinkhorn divergence between the row-softmax of the flattened projections and the
    same rows permuted; summed."""
    return sum(SINKHORN(torch.softmax(p.flatten(1), -1), torch.softmax(p[permutation].flatten(1), -1))
               for p in projected)


def reconstruction(projected_noisy, projected):
    """Per level: mean over batch and positions of 1 - cos over channels; summed."""
    return sum(torch.mean(1 - nn.CosineSimilarity()(n, c)) for n, c in zip(projected_noisy, projected))


def contrast(noisy_teacher, projected):
    """Per level: CosineEmbeddingLoss(margin 0.5) with target -1 on flattened maps; summed."""
    loss = nn.CosineEmbeddingLoss(margin=0.5)
    target = -torch.ones(projected[0].shape[0], dtype=projected[0].dtype)
    return sum(loss(t.flatten(1), p.flatten(1), target) for t, p in zip(noisy_teacher, projected))


def projection_loss(noisy_teacher, projected_noisy, projected, permutation):
    """(ssot + 0.01 reconstruction + 0.1 contrast) / 1.11 and the three terms."""
    terms = {"ssot": ssot(projected, permutation), "reconstruction": reconstruction(projected_noisy, projected),
             "contrast": contrast(noisy_teacher, projected)}
    return (terms["ssot"] + 0.01 * terms["reconstruction"] + 0.1 * terms["contrast"]) / 1.11, terms


def objective(encoder, proj, bn, decoder, images, noisy_images, permutation, proj_weight=0.2):
    """One batch of the official training step: the total loss and its terms (before backward)."""
    teacher, noisy_teacher = encoder(images), encoder(noisy_images)
    projected, projected_noisy = proj(teacher), proj(noisy_teacher)
    proj_total, terms = projection_loss(noisy_teacher, projected_noisy, projected, permutation)
    distillation = flattened_cosine_loss(teacher, decoder(bn(projected)))
    return distillation + proj_weight * proj_total, {"distillation": distillation, "projection": proj_total, **terms}
