"""Makes timm 0.3.2 (the version upstream pins) work on current torch and Pillow.

Import this module before the first `import timm`. It only has import-time side effects and is
safe to import more than once.
"""
import collections.abc
import math
import sys
import types
import warnings

import torch
from PIL import Image

# torch 2.x removed torch._six; timm 0.3.2 imports container_abcs from it (and upstream utils.py imports inf).
if "torch._six" not in sys.modules:
    _six = types.ModuleType("torch._six")
    _six.container_abcs = collections.abc
    _six.string_classes = (str, bytes)
    _six.int_classes = int
    _six.inf = math.inf
    sys.modules["torch._six"] = _six
    torch._six = _six

# timm's activations are decorated with torch.jit.script, which warns on every import of timm.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    import timm  # noqa: E402
    import timm.data.auto_augment as _auto_augment  # noqa: E402
    import timm.data.mixup as _mixup  # noqa: E402


def _one_hot(x, num_classes, on_value=1., off_value=0., device=None):
    x = x.long().view(-1, 1)
    device = x.device if device is None else device
    return torch.full((x.size(0), num_classes), off_value, device=device).scatter_(1, x.to(device), on_value)


def _mixup_target(target, num_classes, lam=1., smoothing=0.0, device=None):
    off_value = smoothing / num_classes
    on_value = 1. - smoothing + off_value
    y1 = _one_hot(target, num_classes, on_value=on_value, off_value=off_value, device=device)
    y2 = _one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value, device=device)
    return y1 * lam + y2 * (1. - lam)


# timm's one_hot/mixup_target default to device='cuda'; Mixup.__call__ looks them up as module globals.
_mixup.one_hot = _one_hot
_mixup.mixup_target = _mixup_target

_original_posterize = getattr(_auto_augment.posterize, "_original", _auto_augment.posterize)


def _posterize(img, bits_to_keep, **kwargs):
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)  # old Pillow: keeping 0 bits gives an all-black image
    return _original_posterize(img, bits_to_keep, **kwargs)


_posterize._original = _original_posterize

# current Pillow (13) rejects 0 bits; RandAugment's 'PosterizeIncreasing' reaches 0 at high magnitudes.
_auto_augment.posterize = _posterize
for _name, _op in list(_auto_augment.NAME_TO_OP.items()):
    if getattr(_op, "__name__", "") == "posterize" or _op is _original_posterize:
        _auto_augment.NAME_TO_OP[_name] = _posterize
