from typing import Optional, Sequence

import torch
import torch.nn as nn

import timm_compat  # noqa: F401
from timm.models.layers import DropPath, trunc_normal_

from .utils import GRN, LayerNorm

MODEL_NAMES = (
    "convnextv2_atto", "convnextv2_femto", "convnext_pico", "convnextv2_pico", "convnextv2_nano",
    "convnextv2_tiny", "convnextv2_base", "convnextv2_large", "convnextv2_huge",
)


class Block(nn.Module):
    """ConvNeXtV2 block: dwconv 7x7 -> LayerNorm -> Linear 4x -> GELU -> GRN -> Linear, plus residual.

    With `keep` (N, 1, H, W), 1 = visible, the block emulates the sparse FCMAE encoder block with dense
    masked operations: masked positions are zero before and after the depthwise conv, GRN statistics use
    visible positions only, and the branch is zeroed at masked positions before the residual add, so masked
    positions never feed into or receive anything from visible ones.
    """

    def __init__(self, dim: int, drop_path: float = 0.):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        shortcut = x
        if keep is not None:
            x = x * keep
        x = self.dwconv(x)
        if keep is not None:
            x = x * keep
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.grn(x, None if keep is None else keep.permute(0, 2, 3, 1))
        x = self.pwconv2(x)
        x = x.permute(0, 3, 1, 2)
        if keep is not None:
            x = x * keep
        return shortcut + self.drop_path(x)


def build_downsample_layers(in_chans: int, dims: Sequence[int]) -> nn.ModuleList:
    """Stem (4x4 conv, stride 4, then LayerNorm) and three downsamplers (LayerNorm, then 2x2 conv, stride 2)."""
    layers = nn.ModuleList([nn.Sequential(
        nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
        LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
    )])
    for i in range(3):
        layers.append(nn.Sequential(
            LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
            nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2),
        ))
    return layers


def build_stages(depths: Sequence[int], dims: Sequence[int], drop_path_rate: float = 0.) -> nn.ModuleList:
    """Four stages of Blocks; drop-path rates rise linearly from 0 over all blocks in order."""
    # on CPU explicitly, so that models can also be built under torch.device('meta')
    rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
    stages = nn.ModuleList()
    start = 0
    for depth, dim in zip(depths, dims):
        stages.append(nn.Sequential(*[Block(dim, drop_path=rates[start + j]) for j in range(depth)]))
        start += depth
    return stages


def init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        trunc_normal_(m.weight, std=.02)
        nn.init.constant_(m.bias, 0)


class ConvNeXtV2(nn.Module):
    def __init__(self, in_chans: int = 3, num_classes: int = 1000, depths: Sequence[int] = (3, 3, 9, 3),
                 dims: Sequence[int] = (96, 192, 384, 768), drop_path_rate: float = 0., head_init_scale: float = 1.):
        super().__init__()
        self.depths = list(depths)
        self.downsample_layers = build_downsample_layers(in_chans, dims)
        self.stages = build_stages(depths, dims, drop_path_rate)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

        self.apply(init_weights)
        self.head.weight.data.mul_(head_init_scale)
        self.head.bias.data.mul_(head_init_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.norm(x.mean([-2, -1]))  # global average pooling, (N, C, H, W) -> (N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def convnextv2_atto(**kwargs):
    return ConvNeXtV2(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320], **kwargs)


def convnextv2_femto(**kwargs):
    return ConvNeXtV2(depths=[2, 2, 6, 2], dims=[48, 96, 192, 384], **kwargs)


def convnext_pico(**kwargs):
    return ConvNeXtV2(depths=[2, 2, 6, 2], dims=[64, 128, 256, 512], **kwargs)


# upstream spells the pico classifier `convnext_pico` but the FCMAE one `convnextv2_pico`; accept both
convnextv2_pico = convnext_pico


def convnextv2_nano(**kwargs):
    return ConvNeXtV2(depths=[2, 2, 8, 2], dims=[80, 160, 320, 640], **kwargs)


def convnextv2_tiny(**kwargs):
    return ConvNeXtV2(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768], **kwargs)


def convnextv2_base(**kwargs):
    return ConvNeXtV2(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024], **kwargs)


def convnextv2_large(**kwargs):
    return ConvNeXtV2(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], **kwargs)


def convnextv2_huge(**kwargs):
    return ConvNeXtV2(depths=[3, 3, 27, 3], dims=[352, 704, 1408, 2816], **kwargs)
