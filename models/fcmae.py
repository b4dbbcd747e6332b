"""Fully convolutional masked autoencoder (FCMAE) with a dense masked-convolution encoder.

Upstream runs the encoder as a sparse MinkowskiEngine network (CUDA only). Here the encoder is the dense
ConvNeXtV2 network with binary masking, which is exactly what the JAX code behind the official weights did:
masked positions are zero before and after every convolution, and GRN statistics are taken per sample over
the visible positions. The encoder's parameter names equal the dense classifier's, so the `encoder.*`
weights of a checkpoint load straight into `ConvNeXtV2`.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .convnextv2 import Block, build_downsample_layers, build_stages, init_weights

MODEL_NAMES = (
    "convnextv2_atto", "convnextv2_femto", "convnextv2_pico", "convnextv2_nano",
    "convnextv2_tiny", "convnextv2_base", "convnextv2_large", "convnextv2_huge",
)


def upsample_mask(mask: torch.Tensor, h: int, w: int, scale: int) -> torch.Tensor:
    """(N, h*w) patch mask -> (N, 1, h*scale, w*scale) by nearest-neighbour block repetition."""
    mask = mask.reshape(-1, 1, h, w)
    return mask.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)


class MaskedConvNeXtV2(nn.Module):
    """ConvNeXtV2 encoder without final norm and head; forward(x, mask) computes on visible patches only."""

    def __init__(self, in_chans: int = 3, depths: Sequence[int] = (3, 3, 9, 3),
                 dims: Sequence[int] = (96, 192, 384, 768), drop_path_rate: float = 0.):
        super().__init__()
        self.depths = list(depths)
        self.downsample_layers = build_downsample_layers(in_chans, dims)
        self.stages = build_stages(depths, dims, drop_path_rate)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W) with H, W divisible by 32; mask (N, H/32 * W/32), 1 = removed.

        Returns the stage-4 feature map (N, dims[-1], H/32, W/32), zero at masked patches.
        """
        h, w = x.shape[2] // 32, x.shape[3] // 32
        keep = 1. - mask.to(x.dtype)
        for i, (downsample, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            keep_i = upsample_mask(keep, h, w, 2 ** (3 - i))  # stage i runs at H / 2^(i+2)
            if i == 0:
                x = downsample(x) * keep_i  # the stem sees the full image, as upstream
            else:
                norm, conv = downsample
                x = conv(norm(x) * keep_prev) * keep_i
            for block in stage:
                x = block(x, keep_i)
            keep_prev = keep_i
        return x


class FCMAE(nn.Module):
    def __init__(self, img_size: int = 224, in_chans: int = 3, depths: Sequence[int] = (3, 3, 9, 3),
                 dims: Sequence[int] = (96, 192, 384, 768), decoder_depth: int = 1, decoder_embed_dim: int = 512,
                 patch_size: int = 32, mask_ratio: float = 0.6, norm_pix_loss: bool = False):
        super().__init__()
        if patch_size != 32:
            raise ValueError("the encoder downsamples by 32, so patch_size must be 32")
        self.img_size = img_size
        self.in_chans = in_chans
        self.depths = list(depths)
        self.dims = list(dims)
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.num_patches = (img_size // patch_size) ** 2
        self.decoder_embed_dim = decoder_embed_dim
        self.decoder_depth = decoder_depth
        self.norm_pix_loss = norm_pix_loss

        self.encoder = MaskedConvNeXtV2(in_chans=in_chans, depths=depths, dims=dims)
        self.proj = nn.Conv2d(dims[-1], decoder_embed_dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_embed_dim, 1, 1))
        self.decoder = nn.Sequential(*[Block(decoder_embed_dim) for _ in range(decoder_depth)])
        self.pred = nn.Conv2d(decoder_embed_dim, patch_size ** 2 * in_chans, kernel_size=1)

        # the encoder's own init everywhere (upstream re-initialised with std 1.0, see docs/UPSTREAM_DIFF.md)
        self.apply(init_weights)
        nn.init.normal_(self.mask_token, std=.02)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, p*p*C); element (r*p + s)*C + c of patch i*w + j is imgs[c, i*p + r, j*p + s]."""
        p = self.patch_size
        n, c, H, W = imgs.shape
        assert H % p == 0 and W % p == 0, f"image size {H}x{W} is not divisible by the patch size {p}"
        h, w = H // p, W // p
        x = imgs.reshape(n, c, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(n, h * w, p * p * c)

    def unpatchify(self, x: torch.Tensor, h: Optional[int] = None, w: Optional[int] = None) -> torch.Tensor:
        """Inverse of patchify; the patch grid is square unless h and w are given."""
        p = self.patch_size
        n, L, d = x.shape
        if h is None or w is None:
            h = w = int(L ** .5)
        assert h * w == L, f"{L} patches do not form a {h}x{w} grid"
        c = d // (p * p)
        x = x.reshape(n, h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(n, c, h * p, w * p)

    def gen_random_mask(self, x: torch.Tensor, mask_ratio: float) -> torch.Tensor:
        """(N, L) float mask, 1 = removed; the len_keep patches with the smallest Gaussian noise stay visible."""
        n = x.shape[0]
        L = (x.shape[2] // self.patch_size) * (x.shape[3] // self.patch_size)
        len_keep = int(L * (1 - mask_ratio))
        noise = torch.randn(n, L, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(n, L, device=x.device)
        mask[:, :len_keep] = 0
        return torch.gather(mask, dim=1, index=ids_restore)

    def forward_encoder(self, imgs: torch.Tensor, mask_ratio: float,
                        mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            mask = self.gen_random_mask(imgs, mask_ratio)
        return self.encoder(imgs, mask), mask

    def forward_decoder(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        n, _, h, w = x.shape
        mask = mask.reshape(n, 1, h, w).to(x.dtype)
        x = x * (1. - mask) + self.mask_token * mask
        x = self.decoder(x)
        return self.pred(x)

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the masked patches of the whole batch."""
        if pred.dim() == 4:
            n, c, _, _ = pred.shape
            pred = pred.reshape(n, c, -1).transpose(1, 2)
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as upstream
            target = (target - mean) / (var + 1.e-6) ** .5
        loss = (pred - target).pow(2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, labels: Optional[torch.Tensor] = None, mask_ratio: float = 0.6,
                mask: Optional[torch.Tensor] = None):
        """Returns (loss, pred (N, p*p*C, H/32, W/32), mask (N, L) with 1 = removed); labels are ignored."""
        x, mask = self.forward_encoder(imgs, mask_ratio, mask)
        pred = self.forward_decoder(x, mask)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask


def convnextv2_atto(**kwargs):
    return FCMAE(depths=[2, 2, 6, 2], dims=[40, 80, 160, 320], **kwargs)


def convnextv2_femto(**kwargs):
    return FCMAE(depths=[2, 2, 6, 2], dims=[48, 96, 192, 384], **kwargs)


def convnextv2_pico(**kwargs):
    return FCMAE(depths=[2, 2, 6, 2], dims=[64, 128, 256, 512], **kwargs)


def convnextv2_nano(**kwargs):
    return FCMAE(depths=[2, 2, 8, 2], dims=[80, 160, 320, 640], **kwargs)


def convnextv2_tiny(**kwargs):
    return FCMAE(depths=[3, 3, 9, 3], dims=[96, 192, 384, 768], **kwargs)


def convnextv2_base(**kwargs):
    return FCMAE(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024], **kwargs)


def convnextv2_large(**kwargs):
    return FCMAE(depths=[3, 3, 27, 3], dims=[192, 384, 768, 1536], **kwargs)


def convnextv2_huge(**kwargs):
    return FCMAE(depths=[3, 3, 27, 3], dims=[352, 704, 1408, 2816], **kwargs)
