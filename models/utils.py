import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from rheed.errors import UserError


class LayerNorm(nn.Module):
    """LayerNorm over channels for channels_last (N, H, W, C) or channels_first (N, C, H, W) inputs."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise NotImplementedError(f"unsupported data_format {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalization on channels_last input (N, H, W, C).

    With `keep` (N, H, W, 1), 1 = visible, the per-sample statistics use the visible positions only
    (the masked-convolution FCMAE encoder); without it all positions count (the dense model).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        visible = x if keep is None else x * keep
        # vector_norm has a zero (not NaN) gradient for an all-zero channel
        gx = torch.linalg.vector_norm(visible, ord=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


# ---------------------------------------------------------------------------------------------
# Checkpoint conversion
# ---------------------------------------------------------------------------------------------

PRETRAIN_ONLY_MODULES = ("decoder", "mask_token", "proj", "pred")
HEAD_KEYS = ("head.weight", "head.bias")


def _minkowski_kernel_to_dense(key: str, kernel: torch.Tensor) -> torch.Tensor:
    """MinkowskiEngine kernel -> Conv2d weight. The flat kernel index is i_h + ks * i_w."""
    kv = kernel.shape[0]
    ks = math.isqrt(kv)
    if ks * ks != kv or kernel.dim() not in (2, 3):
        raise UserError(f"cannot convert {key} of shape {tuple(kernel.shape)}: not a square 2-D sparse kernel")
    if kernel.dim() == 3:  # (kv, in, out) -> (out, in, ks, ks)
        out_ch, in_ch = kernel.shape[2], kernel.shape[1]
        weight = kernel.permute(2, 1, 0).reshape(out_ch, in_ch, ks, ks)
    else:  # depthwise (kv, C) -> (C, 1, ks, ks)
        weight = kernel.t().reshape(kernel.shape[1], 1, ks, ks)
    # the reshape gave [..., i_w, i_h]; Conv2d wants [..., y = i_h, x = i_w]
    return weight.transpose(-1, -2).contiguous()


def remap_checkpoint_keys(state_dict: dict) -> dict:
    """Converts any supported checkpoint to dense ConvNeXtV2 keys and shapes.

    Handles official MinkowskiEngine FCMAE checkpoints, `pt_only` FCMAE files with dense names, our own FCMAE
    checkpoints and fine-tuned classifiers. Every rule looks at the key name and the tensor shape, so an
    already-dense tensor is never reshaped (upstream turned dense GRN parameters 6-D). Pre-training-only
    modules (decoder, mask_token, proj, pred) are dropped.
    """
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "encoder":
            parts = parts[1:]
        if not parts or parts[0] in PRETRAIN_ONLY_MODULES:
            continue
        if parts[-1] == "kernel":
            key = ".".join(parts[:-1] + ["weight"])
            out[key] = _minkowski_kernel_to_dense(key, value)
            continue
        parts = [p for p in parts[:-1] if p not in ("ln", "linear")] + parts[-1:]
        key = ".".join(parts)
        if parts[-1] == "bias" and value.dim() == 2 and value.shape[0] == 1:
            value = value.reshape(-1)  # Minkowski bias (1, C)
        elif len(parts) >= 2 and parts[-2] == "grn" and value.dim() == 2:
            value = value.reshape(1, 1, 1, -1)  # MinkowskiGRN (1, C)
        out[key] = value
    return out


def _unwrap_state_dict(checkpoint: dict) -> dict:
    if not isinstance(checkpoint, dict):
        raise UserError("checkpoint is not a dictionary of weights")
    if isinstance(checkpoint.get("model"), dict):
        return checkpoint["model"]
    if checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
        return checkpoint  # a bare state_dict
    raise UserError(f"checkpoint has no 'model' entry (keys: {', '.join(sorted(map(str, checkpoint))[:8])})")


def load_pretrained_weights(model: nn.Module, checkpoint: dict, model_prefix: str = "") -> dict:
    """Loads pre-trained weights as upstream's --finetune does (steps 2-6), without re-initialising the head.

    `checkpoint` is a loaded checkpoint dict (its 'model' entry is used) or a bare state_dict. A head whose
    shape differs from the model's is skipped; any other size mismatch, or a checkpoint of which no weight
    matches the model, raises UserError. Returns {'missing': [...], 'unexpected': [...], 'mismatched': [...]}
    with model keys not loaded, checkpoint keys not used and head keys skipped for their shape.
    """
    state = remap_checkpoint_keys(_unwrap_state_dict(checkpoint))
    model_state = model.state_dict()

    to_load, unexpected, mismatched = {}, [], []
    for ckpt_key, value in state.items():
        key = ckpt_key[len(model_prefix):] if ckpt_key.startswith(model_prefix) else None
        if key not in model_state:
            unexpected.append(ckpt_key)
        elif value.shape != model_state[key].shape:
            if key not in HEAD_KEYS:
                raise UserError(
                    f"checkpoint does not fit the model: {key} has shape {tuple(value.shape)} in the checkpoint "
                    f"but {tuple(model_state[key].shape)} in the model (was it trained with another --model?)")
            mismatched.append(key)
        else:
            to_load[key] = value
    if not any(key not in HEAD_KEYS for key in to_load):
        raise UserError("no weight in the checkpoint matches the model (checkpoint of another architecture?)")

    model.load_state_dict(to_load, strict=False)
    missing = [key for key in model_state if key not in to_load]
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched)
