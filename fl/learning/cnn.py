"""Convolutional models for the image task (Dong et al. 2024, Sec. 6.1.2).

"Following [CheXNet], we use DenseNet121 as the network backbone ... We process each CXR
with instance normalization and no data augmentation is applied." Both models here start
with a parameter-free ``InstanceNorm2d`` over the input, so every image is standardised
on its own (no dataset statistics have to be shared between clients).

- ``SmallCNN`` (default): three strided 3x3 conv layers and a two-layer head, 90k
  parameters (a 360 KB update); one local epoch on 160 Fashion-MNIST images takes about
  30 ms on one CPU core and scoring 2,000 test images about 0.1 s, so dozens of clients
  and rounds fit on a laptop.
- ``densenet121(...)``: torchvision's DenseNet121 (random init) behind the same input
  normalisation. torchvision is an optional extra: the CPU torch wheel used here does
  not ship it, and asking for DenseNet121 without it raises ``ModelUnavailable`` saying
  how to install it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MODELS = ("cnn", "densenet121")
DENSENET_MIN_SIZE = 32  # DenseNet121 halves the image five times


class ModelUnavailable(RuntimeError):
    """The requested model needs a package that is not installed (the message says which)."""


class _AveragePool(nn.AdaptiveAvgPool2d):
    """AdaptiveAvgPool2d that passes an input already of the output size through (the same
    numbers: one-pixel windows), skipping the pooling kernel; on 28x28 images the 4x4 feature
    map of conv3 is already the head's size, and the kernel cost a fifth of a training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size
        if tuple(x.shape[-2:]) == ((size, size) if isinstance(size, int) else tuple(size)):
            return x
        return super().forward(x)


class SmallCNN(nn.Module):
    """InstanceNorm(input) -> three stride-2 3x3 conv + ReLU -> adaptive 4x4 average -> MLP head.

    Returns one logit per class, shape (N, num_classes); any input size >= 4 works (28x28:
    28 -> 14 -> 7 -> 4). Strided convolutions instead of max-pooling: on a CPU core they
    are about three times faster here for the same test accuracy.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, hidden: int = 64):
        super().__init__()
        if min(in_channels, num_classes, width, hidden) < 1:
            raise ValueError("in_channels, num_classes, width and hidden must be positive")
        self.input_norm = nn.InstanceNorm2d(in_channels, affine=False, track_running_stats=False)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            _AveragePool(4),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.input_norm(x)))


class NormalisedDenseNet(nn.Module):
    """InstanceNorm(input), grayscale repeated to 3 channels, DenseNet121 logits."""

    def __init__(self, backbone: nn.Module, in_channels: int):
        super().__init__()
        self.input_norm = nn.InstanceNorm2d(in_channels, affine=False, track_running_stats=False)
        self.in_channels = in_channels
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        if min(x.shape[-2:]) < DENSENET_MIN_SIZE:
            x = F.interpolate(x, size=(DENSENET_MIN_SIZE, DENSENET_MIN_SIZE), mode="bilinear", align_corners=False)
        return self.backbone(x)


def torchvision_available() -> bool:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def densenet121(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """DenseNet121 (randomly initialised; no weights are downloaded) for 1- or 3-channel input."""
    try:
        from torchvision.models import densenet121 as tv_densenet121
    except ImportError as exc:
        raise ModelUnavailable(
            "DenseNet121 needs torchvision, which is not installed (the CPU torch "
            f"{torch.__version__} here ships without it). Install the torchvision release built "
            "for this torch (pip install torchvision; see https://pytorch.org/get-started/"
            "previous-versions/ for the matching pair), or use the default --model cnn."
        ) from exc
    if in_channels not in (1, 3):
        raise ValueError(f"DenseNet121 takes 1 or 3 input channels, got {in_channels}")
    return NormalisedDenseNet(tv_densenet121(weights=None, num_classes=num_classes), in_channels)


def make_cnn(name: str, in_channels: int, num_classes: int, seed: int) -> nn.Module:
    """A freshly initialised ``name`` model ("cnn" or "densenet121"); same seed, same weights."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if name == "cnn":
            return SmallCNN(in_channels, num_classes)
        return densenet121(in_channels, num_classes)
