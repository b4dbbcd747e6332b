"""torchvision networks as baselines for comparison tables: `main_finetune.py --model resnet18` and friends.

Each network is wrapped so that its classifier is a single `head` Linear, as in ConvNeXt-V2: head
re-initialisation, class-count checks, checkpoints, predict.py, export and Grad-CAM treat both alike.
The rest keeps torchvision's own module names under `body.`, so torchvision's ImageNet weights (a state-dict
file saved on a connected machine) load with `--finetune FILE`: see `from_torchvision_keys`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

# name -> (torchvision constructor keyword for stochastic depth or None, Grad-CAM layer: last feature map)
BASELINES = {
    'resnet18': (None, 'body.layer4'),
    'resnet50': (None, 'body.layer4'),
    'efficientnet_b0': ('stochastic_depth_prob', 'body.features'),
    'convnext_tiny': ('stochastic_depth_prob', 'body.features'),
}
BASELINE_NAMES = tuple(BASELINES)


def _detach_classifier(name: str, net: nn.Module) -> int:
    """Replaces the final Linear of a torchvision classifier by Identity; returns its input width."""
    if name.startswith('resnet'):
        width = net.fc.in_features
        net.fc = nn.Identity()
        return width
    last = len(net.classifier) - 1       # efficientnet: (Dropout, Linear); convnext: (LayerNorm2d, Flatten, Linear)
    width = net.classifier[last].in_features
    net.classifier[last] = nn.Identity()
    return width


class TorchvisionClassifier(nn.Module):
    def __init__(self, name: str, num_classes: int = 1000, drop_path_rate: float = 0.0,
                 head_init_scale: float = 1.0):
        super().__init__()
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINE_NAMES)}")
        depth_key, self.gradcam_layer = BASELINES[name]
        kwargs = {depth_key: drop_path_rate} if depth_key and drop_path_rate > 0 else {}
        self.body = torchvision.models.get_model(name, weights=None, **kwargs)
        self.head = nn.Linear(_detach_classifier(name, self.body), num_classes)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head reads (as ConvNeXtV2.forward_features)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def build_baseline(name: str, num_classes: int = 1000, drop_path_rate: float = 0.0,
                   head_init_scale: float = 1.0) -> TorchvisionClassifier:
    return TorchvisionClassifier(name, num_classes, drop_path_rate, head_init_scale)


def from_torchvision_keys(checkpoint: dict) -> dict:
    """A torchvision state dict (conv1.weight, ..., fc.weight), bare or under 'model', in this wrapper's names
    (body.conv1.weight, ...); one that already uses them is returned as is. The torchvision classifier's
    weights end up unused (the head is new)."""
    state_dict = checkpoint['model'] if isinstance(checkpoint.get('model'), dict) else checkpoint
    if any(k.startswith(('body.', 'head.')) for k in state_dict):
        return state_dict
    return {f'body.{k}': v for k, v in state_dict.items()}
