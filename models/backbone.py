"""ResNet feature extractors (torchvision architecture) returning the C2..C5 maps, with a registry by name.

``build_resnet(name)`` gives a module mapping an image batch (B, 3, H, W) float (ImageNet-normalised) to
``dict(C2, C3, C4, C5)`` of (B, C_i, H / s_i, W / s_i) maps. With ``output_stride=16`` (the default, as in
weakly-supervised segmentation) the last stage keeps stride 16 through dilation
(``replace_stride_with_dilation``), so C4 and C5 share one grid.

Parameter names follow torchvision's ``ResNet`` (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so ImageNet
state dicts from torchvision load directly (their ``fc`` entries are ignored).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

logger = logging.getLogger(__name__)

_DILATION = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of one registered ResNet: Bottleneck blocks per stage and the stem width."""

    layers: tuple[int, int, int, int]
    width: int = 64  # stem channels; stage i has width * 2**i bottleneck planes, 4x that many output channels
    checkpoint: str | None = None  # name in models.weights.CHECKPOINTS for its ImageNet weights


BACKBONES: dict[str, ResNetSpec] = {
    "resnet50": ResNetSpec((3, 4, 6, 3), 64, "resnet50"),
    "resnet101": ResNetSpec((3, 4, 23, 3), 64, "resnet101"),
    # Width-reduced ResNets (same block type and layout), for tests and quick CPU runs; no pretrained weights.
    "resnet_tiny": ResNetSpec((1, 1, 1, 1), 8),
    "resnet_small": ResNetSpec((1, 2, 2, 1), 16),
}


class ResNetFeatures(ResNet):
    """torchvision ResNet without its pooling / fc head, returning the four stage outputs.

    Built with torchvision's own ``_make_layer`` and ``Bottleneck``, at any stem ``width`` (64 = the standard
    ResNet-50/101 widths). ``channels`` gives the channel count of each returned map.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        width: int = 64,
        output_stride: int = 16,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        if output_stride not in _DILATION:
            raise ValueError(f"output_stride must be one of {sorted(_DILATION)}, got {output_stride}")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {list(layers)}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        nn.Module.__init__(self)  # the parent's __init__ would build the full-width network first
        dilate = _DILATION[output_stride]
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # bottleneck inner width == planes, as in ResNet-50
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(Bottleneck, width, int(layers[0]))
        self.layer2 = self._make_layer(Bottleneck, width * 2, int(layers[1]), stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(Bottleneck, width * 4, int(layers[2]), stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(Bottleneck, width * 8, int(layers[3]), stride=2, dilate=dilate[2])
        e = Bottleneck.expansion
        self.channels = {"C2": width * e, "C3": width * 2 * e, "C4": width * 4 * e, "C5": width * 8 * e}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """(B, 3, H, W) float -> dict C2 (stride 4), C3 (8), C4 (16), C5 (output_stride) of (B, C, h, w)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an image batch (B, 3, H, W), got shape {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {"C2": c2, "C3": c3, "C4": c4, "C5": c5}

    def load_backbone_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a torchvision ResNet state dict (its ``fc.*`` entries are dropped); mismatches raise ValueError."""
        from models.weights import load_exact_state_dict

        load_exact_state_dict(self, dict(state_dict), "this ResNet", drop_prefix="fc.")


def centre_cells(maps: torch.Tensor, input_size: tuple[int, int], stride: int) -> torch.Tensor:
    """Resample a ResNet's (..., h, w) maps onto the cell-centred grid that bilinear resizing assumes.

    Every strided layer here (7 x 7 with padding 3, 3 x 3 with padding 1, 1 x 1 with padding 0, the 3 x 3 max-pool)
    maps output index i to input pixel 2i, so the cell (i, j) of a stride-``stride`` map looks at input pixel
    (stride * i, stride * j). ``F.interpolate(..., align_corners=False)``, and every resize after it, puts that cell
    at the centre of its share of the image, ``(i + 0.5) * H / h - 0.5``: about ``stride / 2`` pixels lower and to
    the right (7.5 px at stride 16). Left as it is, every CAM and feature map sits that far off its object.
    ``input_size``: the (H, W) of the batch the maps came from. Returns the same shape: each cell's value at its
    centre, linear between the network's samples and the border value beyond them.
    """
    h, w = maps.shape[-2:]
    rows = _centre_weights(h, input_size[0], stride, maps.device)
    cols = _centre_weights(w, input_size[1], stride, maps.device)
    out = maps.index_select(-2, rows[0]) * rows[2][:, None] + maps.index_select(-2, rows[1]) * rows[3][:, None]
    return out.index_select(-1, cols[0]) * cols[2] + out.index_select(-1, cols[1]) * cols[3]


def centre_wss_features(features: Mapping[str, torch.Tensor], input_size: tuple[int, int],
                        output_stride: int) -> dict[str, torch.Tensor]:
    """``centre_cells`` of the C4 and C5 maps of a ResNet at ``output_stride`` (C4 at stride 16, or 8 when the
    network is dilated to 8): the WSS features DHR reads, on the grid a resize assumes."""
    return {"C4": centre_cells(features["C4"], input_size, min(output_stride, 16)),
            "C5": centre_cells(features["C5"], input_size, output_stride)}


def _centre_weights(cells: int, size: int, stride: int, device: torch.device):
    """(low index, high index, low weight, high weight), each (cells,): where each cell centre falls on the network grid."""
    centre = (torch.arange(cells, dtype=torch.float64) + 0.5) * size / cells - 0.5
    at = (centre / stride).clamp(0, cells - 1)
    low = at.floor().long()
    high = (low + 1).clamp(max=cells - 1)
    frac = (at - low).float()
    return low.to(device), high.to(device), (1 - frac).to(device), frac.to(device)


def build_resnet(
    name: str = "resnet50",
    state_dict: Mapping[str, torch.Tensor] | None = None,
    output_stride: int = 16,
) -> ResNetFeatures:
    """Build a registered ResNet feature extractor, optionally loading a torchvision ``state_dict``.

    ``name``: a key of ``BACKBONES`` ("resnet50", "resnet101", "resnet_tiny", "resnet_small").
    Returns a module mapping (B, 3, H, W) float -> dict(C2, C3, C4, C5).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    model = ResNetFeatures(spec.layers, spec.width, output_stride)
    if state_dict is not None:
        model.load_backbone_state_dict(state_dict)
    return model


def imagenet_state_dict(
    name: str, weights_dir: str | Path | None = None, download: bool = True
) -> dict[str, torch.Tensor] | None:
    """ImageNet weights for backbone ``name`` through ``models.weights``, or None with a warning.

    None (training from scratch) when the backbone has no registered checkpoint or the file is neither in the
    weights folder nor downloadable.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    checkpoint = BACKBONES[name].checkpoint
    if checkpoint is None:
        warnings.warn(f"backbone {name!r} has no ImageNet weights; it is trained from scratch", stacklevel=2)
        return None
    from models.weights import load_state_dict

    try:
        return load_state_dict(checkpoint, weights_dir=weights_dir, download=download)
    except FileNotFoundError as error:
        warnings.warn(f"ImageNet weights unavailable ({error}); {name} is trained from scratch", stacklevel=2)
        return None
