"""DeepLabv3+ with a classification head: segmentation logits, tag logits, CAMs and the C4/C5 features.

The network follows Chen et al. (ECCV 2018): an ASPP module on the backbone's last stage (C5), a decoder that
fuses the ASPP output with the stride-4 features (C2), and a 1x1 classifier. A second head, a 1x1 convolution
on C5, scores every foreground class per cell: its ReLU output is the class activation map (CAM) and its global
average is the multi-label tag logit, so one forward gives what the DHR step needs (CAMs, C4, C5).

Layouts: input images (B, 3, H, W) float, ImageNet-normalised; ``seg`` (B, N + 1, H, W) logits over background
and the N classes; ``cls`` (B, N) tag logits; ``cams`` (B, N, h, w) >= 0 at the C5 stride; ``C4``/``C5`` the
backbone features. CAMs, C4 and C5 are resampled to their cells' centres (``models.backbone.centre_wss_features``), so
that a bilinear resize lays them on the image where the network looked.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import centre_cells, centre_wss_features

__all__ = ["ASPP", "Decoder", "DeepLabV3Plus", "build_deeplab"]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = 0 if kernel_size == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _ImagePooling(nn.Module):
    """Global-average branch of ASPP: (B, C, h, w) -> (B, out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        # GroupNorm with one group: BatchNorm on a 1x1 map fails for batch 1.
        self.norm = nn.GroupNorm(1, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm(self.conv(F.adaptive_avg_pool2d(x, 1))))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pooling branch, fused by a 1x1."""

    def __init__(self, in_channels: int, out_channels: int = 256, rates: tuple[int, ...] = (6, 12, 18),
                 dropout: float = 0.5) -> None:
        super().__init__()
        branches: list[nn.Module] = [_conv_bn_relu(in_channels, out_channels)]
        branches += [_conv_bn_relu(in_channels, out_channels, 3, rate) for rate in rates]
        branches.append(_ImagePooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn_relu(out_channels * len(branches), out_channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, h, w) -> (B, out, h, w)."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class Decoder(nn.Module):
    """DeepLabv3+ decoder: upsampled ASPP output fused with reduced stride-4 features, then a 1x1 classifier."""

    def __init__(self, low_channels: int, aspp_channels: int, num_outputs: int, low_reduced: int = 48,
                 channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.reduce = _conv_bn_relu(low_channels, low_reduced)
        self.fuse = nn.Sequential(
            _conv_bn_relu(aspp_channels + low_reduced, channels, 3),
            _conv_bn_relu(channels, channels, 3),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Conv2d(channels, num_outputs, 1)

    def forward(self, aspp: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """aspp (B, A, h, w), low (B, L, 4h', 4w') -> logits (B, num_outputs, 4h', 4w')."""
        aspp = F.interpolate(aspp, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([aspp, self.reduce(low)], dim=1)))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ on a backbone returning ``dict(C2, C3, C4, C5)``, plus a CAM classification head on C5.

    ``num_classes`` counts the foreground classes N; the segmentation head predicts N + 1 outputs
    (0 = background). ``forward`` returns a dict: ``seg`` (B, N + 1, H, W) logits at the input size,
    ``cls`` (B, N) tag logits, ``cams`` (B, N, h5, w5) >= 0, and ``C4``, ``C5`` backbone features.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, aspp_channels: int = 256,
                 decoder_channels: int = 256, aspp_rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = backbone
        channels = _feature_channels(backbone)
        self.feature_channels = channels
        self.aspp = ASPP(channels["C5"], aspp_channels, aspp_rates)
        self.decoder = Decoder(channels["C2"], aspp_channels, num_classes + 1, channels=decoder_channels)
        self.cam_head = nn.Conv2d(channels["C5"], num_classes, 1, bias=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        features = self.backbone(images)
        c5 = features["C5"]
        seg = self.decoder(self.aspp(c5), features["C2"])
        seg = F.interpolate(seg, size=images.shape[-2:], mode="bilinear", align_corners=False)
        scores = self.cam_head(c5)
        size = images.shape[-2:]
        return {
            "seg": seg,
            "cls": scores.mean(dim=(2, 3)),
            # The 1 x 1 head commutes with the centring (each centred cell is a weighted mean of cells), so the
            # head runs once, on the network's grid.
            "cams": torch.relu(centre_cells(scores, size, self.output_stride)),
            **centre_wss_features(features, size, self.output_stride),
        }

    @property
    def output_stride(self) -> int:
        return int(getattr(self.backbone, "output_stride", 16))

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the randomly initialised heads (ASPP, decoder, CAM head): trained at 10x the lr."""
        for module in (self.aspp, self.decoder, self.cam_head):
            yield from module.parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.backbone.parameters()


def _feature_channels(backbone: nn.Module) -> dict[str, int]:
    """Channel count of C2..C5 as declared by the backbone (``channels``, like ``models.backbone``)."""
    declared = getattr(backbone, "channels", None)
    if not isinstance(declared, dict) or any(k not in declared for k in ("C2", "C4", "C5")):
        raise ValueError("backbone must expose `channels` = dict(C2, C3, C4, C5) of channel counts")
    return {k: int(v) for k, v in declared.items()}


def build_deeplab(num_classes: int, backbone: str = "resnet50", *, backbone_state_dict: dict | None = None,
                  output_stride: int = 16) -> DeepLabV3Plus:
    """DeepLabv3+ for ``num_classes`` foreground classes on a ``models.backbone`` ResNet.

    ``backbone``: "resnet50", "resnet101", or the width-reduced "resnet_tiny" / "resnet_small" (tests, CPU
    demos; their heads are narrowed to 32 / 64 channels). ASPP rates follow the output stride (6/12/18 at 16).
    """
    from models.backbone import build_resnet

    net = build_resnet(backbone, state_dict=backbone_state_dict, output_stride=output_stride)
    rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    width = _HEAD_WIDTH.get(backbone, 256)
    if width < 256:
        rates = tuple(r // 3 for r in rates)
    return DeepLabV3Plus(net, num_classes, aspp_channels=width, decoder_channels=width, aspp_rates=rates)


_HEAD_WIDTH = {"resnet_tiny": 32, "resnet_small": 64}
