"""Training and evaluation transforms for RHEED frames (`--aug_mode rheed` in main_finetune.py).

Upstream's ImageNet recipe (RandAugment, 8-100 % crops, random erasing) is built for colour photos of
objects. A RHEED frame is a grayscale diffraction pattern whose class is carried by the shape of a few
small bright features (streaks vs spots), so the RHEED mode keeps the geometry and varies what differs
between cameras and chambers:

- windows whose area is a share of the frame's (`--crop_scale`; the launchers use 0.5-2.0) with an aspect
  ratio near the frame's own, resized to a square: the whole pattern, squashed like the evaluation view,
  never a corner of it; a MAX above 1 zooms out (the frame padded with the zero background), because how
  much of the screen a pattern fills differs between chambers and must not decide the class;
- horizontal flips (the pattern is left-right symmetric) and vertical flips (cameras are mounted either
  way up, so the shadow edge can be at the top or the bottom of a frame);
- rotations of a few degrees (camera and sample alignment);
- brightness, contrast and gamma (beam current, phosphor ageing, camera gain and response curve);
- Gaussian blur (focus, phosphor spread) and Gaussian noise (shot and read noise);
- with `--camera_aug`, before background subtraction: the raw frame as another camera records it (gain that
  saturates, a brighter response curve, JPEG compression; RandomCamera).

With `--despeckle` (training and evaluation alike) every pixel is clipped to its brightest neighbour before
background subtraction: stuck (hot) pixels of the camera would otherwise survive it as sharp "spots" (Despeckle).

No colour operation: the three channels stay identical. Evaluation resizes the whole frame to a square
(no centre crop that could cut off the pattern). With `--pad_aspect` every frame is first padded to one aspect
ratio (PadToAspect) and training windows come from the padded frame, so the squash to a square is the same for
every sensor shape.
"""
from __future__ import annotations

import io
import math
import random

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision import transforms
from torchvision.transforms import functional as TF


class RandomCropKeepingAspect:
    """RandomResizedCrop whose aspect-ratio range is centred on the input frame's own aspect ratio.

    A scale above 1 lets the window be larger than the frame (zoom out): the frame then lies inside the window
    and the rest is zero - the background after --subtract_background - so the pattern appears smaller than
    in the whole-frame evaluation view. With `canvas_aspect` a frame of another aspect ratio is treated as padded to
    it (PadToAspect, as evaluation does) and the windows, of about that aspect, are drawn from the padded frame."""

    def __init__(self, size: int, scale: tuple = (0.5, 1.0), ratio_spread: float = 1.25, shift: float = 0.0,
                 canvas_aspect: float = 0.0):
        self.size, self.scale, self.spread, self.shift = size, tuple(scale), ratio_spread, shift
        self.canvas_aspect = canvas_aspect

    def window(self, width: int, height: int, ratio: tuple) -> tuple:
        """(top, left, h, w) of a window of area scale x the frame's, log-uniform aspect ratio in `ratio`; a side
        longer than the frame's is placed so that it covers the frame. With `shift` the window may also reach
        up to that share of the frame's side past the frame's edges, so the pattern can lie off-centre."""
        area = width * height * torch.empty(1).uniform_(*self.scale).item()
        aspect = math.exp(torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1])).item())
        w, h = max(1, round(math.sqrt(area * aspect))), max(1, round(math.sqrt(area / aspect)))
        dx, dy = round(self.shift * width), round(self.shift * height)
        left = int(torch.randint(min(0, width - w) - dx, max(0, width - w) + dx + 1, (1,)))
        top = int(torch.randint(min(0, height - h) - dy, max(0, height - h) + dy + 1, (1,)))
        return top, left, h, w

    def __call__(self, img: Image.Image) -> Image.Image:
        width, height = padded_size(img.width, img.height, self.canvas_aspect) if self.canvas_aspect else img.size
        padded = (width, height) != img.size
        aspect = self.canvas_aspect if padded else img.width / img.height
        ratio = (aspect / self.spread, aspect * self.spread)
        if padded or self.scale[1] > 1 or self.shift > 0:
            top, left, h, w = self.window(width, height, ratio)
            top, left = top - (height - img.height) // 2, left - (width - img.width) // 2   # padding is centred
        else:   # torchvision's sampler (windows inside the frame), as before zoom-out existed
            top, left, h, w = transforms.RandomResizedCrop.get_params(img, self.scale, ratio)
        return TF.resized_crop(img, top, left, h, w, [self.size, self.size],
                               interpolation=transforms.InterpolationMode.BICUBIC, antialias=True)


def padded_size(width: int, height: int, aspect: float) -> tuple[int, int]:
    """(width, height) of the smallest frame of width/height `aspect` that contains a width x height frame."""
    return max(width, round(height * aspect)), max(height, round(width / aspect))


class PadToAspect:
    """The frame centred on the smallest canvas of width/height `aspect` that holds it, zero around it (the
    background after --subtract_background). The square network input then squashes every frame the same way,
    so a pattern keeps the proportions it has on a camera of that aspect: a square or 5:4 sensor gets black
    columns, a 16:9 one black rows, a frame of that aspect is unchanged. Without it a 4:3 frame's pattern is
    squashed 3/4 horizontally relative to the same pattern on a square sensor (docs/EXPERIMENTS.md section 44)."""

    def __init__(self, aspect: float):
        self.aspect = aspect

    def __repr__(self) -> str:
        return f"{type(self).__name__}(aspect={self.aspect:.4f})"

    def __call__(self, img: Image.Image) -> Image.Image:
        width, height = padded_size(img.width, img.height, self.aspect)
        if (width, height) == img.size:
            return img
        left, top = (width - img.width) // 2, (height - img.height) // 2
        return TF.pad(img, [left, top, width - img.width - left, height - img.height - top])


class RandomGamma:
    """I -> I ** gamma on [0, 1] intensities, gamma log-uniform in [1/g, g]."""

    def __init__(self, max_gamma: float = 1.5, p: float = 0.5):
        self.max_gamma, self.p = max_gamma, p

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        gamma = self.max_gamma ** random.uniform(-1.0, 1.0)
        return TF.adjust_gamma(img, gamma)


class RandomBlur:
    def __init__(self, max_sigma: float = 1.5, p: float = 0.3):
        self.max_sigma, self.p = max_sigma, p

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, self.max_sigma)))


class RandomNoise:
    """Adds the same Gaussian noise to the three channels of a [0, 1] tensor (a grayscale camera)."""

    def __init__(self, max_std: float = 0.04, p: float = 0.3):
        self.max_std, self.p = max_std, p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if random.random() >= self.p:
            return x
        noise = torch.randn_like(x[:1]) * random.uniform(0.0, self.max_std)
        return (x + noise).clamp_(0.0, 1.0)


def camera_response(gray: np.ndarray, rng: np.random.Generator, gain: bool = True) -> tuple[int | None, np.ndarray]:
    """(JPEG quality or None, float pixels) of an 8-bit grey frame as one random camera records it: gamma
    0.5-0.8 (p 0.3), gain 1.3-3 saturating at 255 (p 0.6; never with gain=False), JPEG quality 30-90 (p 0.5),
    at least one of them."""
    use_gamma, use_gain, use_jpeg = rng.random() < 0.3, rng.random() < 0.6 and gain, rng.random() < 0.5
    if not (use_gamma or use_gain or use_jpeg):
        use_gain, use_jpeg = gain, not gain
    pixels = gray
    if use_gamma:
        pixels = 255 * (pixels / 255) ** rng.uniform(0.5, 0.8)
    if use_gain:
        pixels = np.clip(pixels * rng.uniform(1.3, 3.0), 0, 255)
    return (int(rng.integers(30, 91)) if use_jpeg else None), pixels


class RandomCamera:
    """With probability p, the loaded 8-bit frame as a random camera records it (camera_response), before
    background subtraction: the subtraction then sees saturated spots, a lifted background and JPEG blocks as it
    would on such a camera. Measured in docs/EXPERIMENTS.md sections 33-34. Costs one full-frame background
    subtraction per call, so the frame cache draws it a few times per frame once (frame_cache.CAMERA_VIEWS)."""

    def __init__(self, p: float = 2 / 3):
        self.p = p

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p:.3f})"

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        rng = rng if rng is not None else np.random.default_rng(random.getrandbits(64))
        if rng.random() >= self.p:
            return img
        quality, pixels = camera_response(np.asarray(img.convert('L'), dtype=np.float32), rng)
        out = Image.fromarray(np.round(pixels).astype(np.uint8))
        if quality is not None:
            buffer = io.BytesIO()
            out.save(buffer, format='JPEG', quality=quality)
            out = Image.open(buffer)
        return out.convert('RGB')


BACKGROUND_MODES = ('global', 'local', 'auto', 'adaptive')
# 'auto': when fewer than this share of the pixels stand above the global level, the level has erased (or all
# but erased) the pattern - a bright diffuse background or phosphor-screen glow lifts median + 3 MAD above it -
# and the local estimate is used. Measured in docs/EXPERIMENTS.md section 12: 0.1 % left near-blank frames of
# other cameras (0.12-0.19 %) on the global path; 0.5 % flipped frames of one run between the two estimates.
AUTO_MIN_PATTERN_FRACTION = 0.003


def block_mean(gray: np.ndarray, factor: int) -> np.ndarray:
    """The frame shrunk `factor` times by averaging factor x factor blocks (a partial last row/column is dropped)."""
    h, w = gray.shape
    small = gray[:h - h % factor or h, :w - w % factor or w]
    return small.reshape(small.shape[0] // factor, factor, small.shape[1] // factor, factor).mean(axis=(1, 3))


def local_background(gray: np.ndarray, window: int = 40) -> np.ndarray:
    """The slowly varying background of a frame (glow, vignetting, beam drift, the screen edge): a grey
    opening (minimum then maximum filter) over `window` pixels removes every feature narrower than that -
    streaks and spots - and keeps broad intensity; it is computed on an 8x smaller copy and smoothed back."""
    from scipy.ndimage import gaussian_filter, grey_opening, zoom
    factor = 8
    h, w = gray.shape
    small = block_mean(gray, factor)
    size = max(3, window // factor)
    background = gaussian_filter(grey_opening(small, size=(size, size)), size / 2)
    full = zoom(background, (h / background.shape[0], w / background.shape[1]), order=1)
    return full[:h, :w]


def above_level(gray: np.ndarray) -> np.ndarray:
    """max(gray - (median + 3 * MAD), 0): what stands out of the frame's diffuse level."""
    median = np.median(gray)
    return np.clip(gray - (median + 3 * np.median(np.abs(gray - median))), 0.0, None)


def screen_background(gray: np.ndarray) -> np.ndarray:
    """The diffuse light of a frame as a smooth surface: screen glow, vignetting, the dark surround of a
    circular screen and the shadow region. A grey opening over 1/16 of the frame width removes streaks,
    spots and rings; it runs on a block-averaged copy, and a 3x3 dilation there moves every edge of the
    estimate one block outwards, so that after upsampling a screen's rim is covered rather than left as a
    bright ring (the residual is clipped at zero outside)."""
    from scipy.ndimage import grey_dilation, grey_opening
    h, w = gray.shape
    factor = max(1, min(8, min(h, w) // 32))
    small = block_mean(gray, factor)
    size = max(3, round(w / 16 / factor))
    small = grey_dilation(grey_opening(small, size=(size, size)), size=(3, 3))
    return np.asarray(Image.fromarray(small.astype(np.float32)).resize((w, h), Image.BILINEAR))


def adaptive_pattern(gray: np.ndarray) -> np.ndarray:
    """What stands out of the local diffuse level: gray minus screen_background, smoothed over about one
    pixel of a 656-wide frame (below what the model's input resolution keeps) to calm shot noise, minus
    median + 3 MAD of that residual over the lit part of the frame (where the background is at least a
    quarter of its 99th percentile), so a dark surround does not pull the noise level to zero."""
    from scipy.ndimage import gaussian_filter
    background = screen_background(gray)
    residual = gaussian_filter(np.clip(gray - background, 0.0, None), max(1.0, gray.shape[1] / 656))
    # The level is estimated on every second row and column: the background is smooth and the residual
    # smoothed, so neighbours agree, and the medians - most of the cost per frame - run four times faster.
    background, sample = background[::2, ::2], residual[::2, ::2]
    lit = background > 0.25 * np.percentile(background, 99)
    values = sample[lit] if lit.mean() >= 0.1 else sample
    median = np.median(values)
    return np.clip(residual - (median + 3 * np.median(np.abs(values - median))), 0.0, None)


class Despeckle:
    """Clips every pixel to the brightest of its 8 neighbours. A camera's hot (stuck) pixels are single bright
    pixels; background subtraction keeps them and the classifier reads them as sharp transmission spots
    (docs/EXPERIMENTS.md section 42: 0.05 % hot pixels changed 7 % of the decisions, almost all towards rough).
    Anything with a neighbour as bright - streaks, spots and rings a few pixels wide, even a 1-pixel line - is
    unchanged except that a peak pixel drops to its brightest neighbour. ~0.2 ms per 656x492 frame; a 3x3
    median does the same to hot pixels but erases 1-pixel lines and costs ~100x more."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(neighbours=8)"

    def __call__(self, img: Image.Image) -> Image.Image:
        gray = np.asarray(img.convert('L'))
        h, w = gray.shape
        padded = np.pad(gray, 1, mode='edge')
        # eight shifted maxima: 8x faster than scipy.ndimage.maximum_filter with a ring footprint (same result)
        brightest = np.zeros_like(gray)
        for dy in range(3):
            for dx in range(3):
                if dy != 1 or dx != 1:
                    np.maximum(brightest, padded[dy:dy + h, dx:dx + w], out=brightest)
        return Image.fromarray(np.minimum(gray, brightest)).convert('RGB')


class SubtractBackground:
    """Sets the diffuse background and the dark screen of a whole frame to exactly zero.

    level = median + 3 * MAD of the frame; x -> max(x - level, 0) / q99.9, clipped at 1 (an 8-bit RGB
    image again). Mode 'local' first removes the slowly varying background (local_background); 'auto' does
    so only when the global level leaves almost nothing (under AUTO_MIN_PATTERN_FRACTION of the pixels), as on
    frames whose screen glow or diffuse background lies above the pattern. Mode 'adaptive' (the launchers')
    subtracts a smooth background surface and takes the level over the lit screen (adaptive_pattern), so a
    black surround or a glow does not decide the level. It runs on the whole frame, before any crop: estimated on a crop, the level and scale
    change from crop to crop and the model learns nothing (docs/EXPERIMENTS.md). Why: ConvNeXt's stem
    LayerNorm normalises every 4x4 patch to unit variance across channels, so a dark, noisy background
    becomes a full-strength random feature at every position and swamps the few streak/spot positions
    after global pooling. An all-zero patch has the opposite problem (zero variance, see
    main_finetune.py --train_stem_bias), which the launchers handle by keeping the stem bias fixed.
    """

    def __init__(self, mode: str = 'global', gamma: float = 1.0):
        if mode not in BACKGROUND_MODES:
            raise ValueError(f"background mode must be one of {BACKGROUND_MODES}, got {mode!r}")
        if not gamma > 0:
            raise ValueError(f"pattern gamma must be positive, got {gamma}")
        self.mode, self.gamma = mode, float(gamma)

    def __repr__(self) -> str:
        extra = f", gamma={self.gamma}" if self.gamma != 1.0 else ""
        return f"{type(self).__name__}(mode={self.mode!r}{extra})"

    def __call__(self, img: Image.Image) -> Image.Image:
        gray = np.asarray(img.convert('L'), dtype=np.float32)
        if self.mode == 'adaptive':
            return self._to_image(adaptive_pattern(gray))
        if self.mode == 'local':
            gray = gray - local_background(gray)
        y = above_level(gray)
        if self.mode == 'auto' and np.count_nonzero(y) < AUTO_MIN_PATTERN_FRACTION * y.size:
            y = above_level(gray - local_background(gray))
        return self._to_image(y)

    def _to_image(self, y: np.ndarray) -> Image.Image:
        top = max(float(np.percentile(y, 99.9)), 1.0)
        out = np.clip(y / top, 0.0, 1.0)
        if self.gamma != 1.0:
            out = out ** self.gamma
        out = out * 255.0
        return Image.fromarray(np.round(out).astype(np.uint8)).convert('RGB')


# With background subtraction the input stays non-negative with an exact-zero background: no mean is
# subtracted, and no operation that would lift the background (contrast blend, additive noise) is used.
# A constant below zero (mean 0.1 -> -0.4) helps frames with a wide pattern but stops learning on sparse
# ones (89 % background), because the background token then dominates global pooling; the zero-variance
# stem LayerNorm input of an all-zero patch is handled by main_finetune.py --train_stem_bias false.
BACKGROUND_MEAN, BACKGROUND_STD = (0.0, 0.0, 0.0), (0.25, 0.25, 0.25)


def input_mean_std(background: bool, mean, std) -> tuple:
    """The normalisation of the network input: the background one after --subtract_background, else (mean, std)."""
    return (BACKGROUND_MEAN, BACKGROUND_STD) if background else (mean, std)


def whole_frame_steps(despeckle: bool, background: bool, background_mode: str = 'global',
                      pattern_gamma: float = 1.0) -> list:
    """The fixed steps on the whole frame, before any crop, shared by training, evaluation and pre-training:
    hot pixels clipped, then the background subtracted (and the pattern's intensities raised to pattern_gamma)."""
    return (([Despeckle()] if despeckle else [])
            + ([SubtractBackground(background_mode, pattern_gamma)] if background else []))


def rheed_train_transform(input_size: int, mean, std, crop_scale=(0.5, 1.0), background: bool = False,
                          background_mode: str = 'global', camera: bool = False,
                          despeckle: bool = False, crop_shift: float = 0.0,
                          pad_aspect: float = 0.0, pattern_gamma: float = 1.0) -> transforms.Compose:
    rotate = transforms.RandomRotation(5, interpolation=transforms.InterpolationMode.BILINEAR)
    return transforms.Compose([
        *([RandomCamera()] if camera else []),
        *whole_frame_steps(despeckle, background, background_mode, pattern_gamma),
        RandomCropKeepingAspect(input_size, scale=crop_scale, shift=crop_shift, canvas_aspect=pad_aspect),
        transforms.RandomHorizontalFlip(),
        transforms.RandomVerticalFlip(),
        transforms.RandomApply([rotate], p=0.3),
        transforms.ColorJitter(brightness=0.3, contrast=0.0 if background else 0.3),
        RandomGamma(),
        RandomBlur(),
        transforms.ToTensor(),
        *([] if background else [RandomNoise()]),
        transforms.Normalize(*input_mean_std(background, mean, std)),
    ])


def rheed_eval_transform(input_size: int, mean, std, background: bool = False,
                         background_mode: str = 'global', despeckle: bool = False,
                         pad_aspect: float = 0.0, pattern_gamma: float = 1.0) -> transforms.Compose:
    mean, std = input_mean_std(background, mean, std)
    return transforms.Compose([
        *whole_frame_steps(despeckle, background, background_mode, pattern_gamma),
        *([PadToAspect(pad_aspect)] if pad_aspect else []),
        transforms.Resize((input_size, input_size), interpolation=transforms.InterpolationMode.BICUBIC,
                          antialias=True),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
