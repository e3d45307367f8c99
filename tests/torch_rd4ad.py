"""PyTorch modules in the official RD4AD structure, under its key names, written here from
docs/reference.md §2.1-2.2 and §3.2 (not the official code): the OCBE and decoder that the parity
tests convert (`tests/models/rd4ad_vs_reference_test.py`), and a stand-in with the official
code's interface (`resnet18`, `de_resnet18`, `loss_fucntion`, `cal_anomaly_map`) that the speed
benchmark's official peer drives in CI (`tests/benchmarks/speed_test.py`). Needs torch and
torchvision: import it after `tests.helpers.import_oracle` has checked for them."""

import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnet as torchvision_resnet


def _deconv(i, o):
    return nn.ConvTranspose2d(i, o, kernel_size=2, stride=2, bias=False)


def _conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)


class TorchDeBasicBlock(nn.Module):
    """First block of a stage: deconv in place of the strided conv, and a deconv+BN shortcut."""

    def __init__(self, inplanes, planes, upsample):
        super().__init__()
        self.conv1 = _deconv(inplanes, planes) if upsample else _conv3x3(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = nn.Sequential(_deconv(inplanes, planes), nn.BatchNorm2d(planes)) if upsample else None

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (self.upsample(x) if self.upsample is not None else x))


class TorchDeBottleneck(nn.Module):
    def __init__(self, inplanes, planes, upsample, base_width):
        super().__init__()
        width = planes * base_width // 64
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _deconv(width, width) if upsample else _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.upsample = nn.Sequential(_deconv(inplanes, planes * 4), nn.BatchNorm2d(planes * 4)) if upsample else None

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (self.upsample(x) if self.upsample is not None else x))


class TorchDecoder(nn.Module):
    """layer1..3 with planes 256, 128, 64; returns [D3, D2, D1]; SK skips: ReLU(D1 + E3) into layer2,
    ReLU(D2 + E2) into layer3."""

    def __init__(self, bottleneck, blocks, base_width=64):
        super().__init__()
        expansion = 4 if bottleneck else 1
        inplanes = 512 * expansion
        for name, planes, n in zip(("layer1", "layer2", "layer3"), (256, 128, 64), blocks):
            make = ((lambda i, up: TorchDeBottleneck(i, planes, up, base_width)) if bottleneck
                    else (lambda i, up: TorchDeBasicBlock(i, planes, up)))
            stage = [make(inplanes, True)] + [make(planes * expansion, False) for _ in range(1, n)]
            setattr(self, name, nn.Sequential(*stage))
            inplanes = planes * expansion

    def forward(self, x, teacher=None):
        d1 = self.layer1(x)
        d2 = self.layer2(d1 if teacher is None else torch.relu(d1 + teacher[2]))
        d3 = self.layer3(d2 if teacher is None else torch.relu(d2 + teacher[1]))
        return [d3, d2, d1]


class TorchOCBE18(nn.Module):
    """ResNet18 OCBE: MFF (conv1/bn1, conv2/bn2 on E1; conv3/bn3 on E2; E3 as is), OCE = 2 torchvision
    BasicBlocks from 768 channels, stride 2; the unused conv4/bn4 as in the official module."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(64, 128, 2), nn.BatchNorm2d(128)
        self.conv2, self.bn2 = _conv3x3(128, 256, 2), nn.BatchNorm2d(256)
        self.conv3, self.bn3 = _conv3x3(128, 256, 2), nn.BatchNorm2d(256)
        downsample = nn.Sequential(nn.Conv2d(768, 512, 1, stride=2, bias=False), nn.BatchNorm2d(512))
        self.bn_layer = nn.Sequential(torchvision_resnet.BasicBlock(768, 512, 2, downsample),
                                      torchvision_resnet.BasicBlock(512, 512))
        self.conv4, self.bn4 = nn.Conv2d(1024, 512, 1, bias=False), nn.BatchNorm2d(512)

    def forward(self, e):
        a = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(e[0]))))))
        b = torch.relu(self.bn3(self.conv3(e[1])))
        return self.bn_layer(torch.cat([a, b, e[2]], 1))


class TorchOCBE50(TorchOCBE18):
    """Wide-ResNet50 OCBE: the same MFF with 4x the channels, OCE = 3 torchvision Bottlenecks
    (width_per_group 128) from 3072 channels, stride 2; no unused conv4/bn4."""

    def __init__(self):
        nn.Module.__init__(self)
        self.conv1, self.bn1 = _conv3x3(256, 512, 2), nn.BatchNorm2d(512)
        self.conv2, self.bn2 = _conv3x3(512, 1024, 2), nn.BatchNorm2d(1024)
        self.conv3, self.bn3 = _conv3x3(512, 1024, 2), nn.BatchNorm2d(1024)
        downsample = nn.Sequential(nn.Conv2d(3072, 2048, 1, stride=2, bias=False), nn.BatchNorm2d(2048))
        self.bn_layer = nn.Sequential(
            torchvision_resnet.Bottleneck(3072, 512, 2, downsample, base_width=128),
            *(torchvision_resnet.Bottleneck(2048, 512, base_width=128) for _ in range(2)))


class TorchResNet18Taps(nn.Module):
    """A torchvision ResNet18 (random weights) that returns E1..E3, as the official encoder does."""

    def __init__(self):
        super().__init__()
        self.net = torchvision.models.resnet18(weights=None)

    def forward(self, x):
        n = self.net
        e1 = n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x)))))
        e2 = n.layer2(e1)
        return [e1, e2, n.layer3(e2)]


# The stand-in's interface, as the official files offer it (docs/reference.md §2.3-2.5).

def standin_resnet18(pretrained=False, progress=True, **kwargs):
    """(encoder, OCBE) as the official `resnet.resnet18`; random weights whatever `pretrained` says."""
    return TorchResNet18Taps(), TorchOCBE18()


def standin_de_resnet18(pretrained=False, progress=True, **kwargs):
    return TorchDecoder(False, (2, 2, 2))


def standin_loss(a, b):
    """docs/reference.md §2.3: per level, 1 - cos of each sample's flattened maps, batch mean; levels summed."""
    return sum(torch.mean(1 - F.cosine_similarity(x.flatten(1), y.flatten(1))) for x, y in zip(a, b))


def standin_cal_anomaly_map(fs_list, ft_list, out_size=224, amap_mode="mul"):
    """docs/reference.md §2.5 steps 1-3 for one image (the official function reads only the first
    image it gets; this stand-in refuses more, so a caller that passes a batch fails here):
    (the map as a float64 numpy array, the per-level maps)."""
    if fs_list[0].shape[0] != 1:
        raise ValueError(f"cal_anomaly_map takes one image, got {fs_list[0].shape[0]}")
    levels = [F.interpolate(1 - F.cosine_similarity(fs, ft)[:, None], size=out_size, mode="bilinear",
                            align_corners=True)[0, 0].double().cpu().numpy() for fs, ft in zip(fs_list, ft_list)]
    combined = levels[0].copy()
    for level in levels[1:]:
        combined = combined * level if amap_mode == "mul" else combined + level
    return combined, levels
