"""Reading RHEED frames: one loader for every dataset in the project.

Frames arrive as 8-bit PNG/JPEG/BMP or as 8/12/16-bit (or float) TIFF straight from the camera.
`read_frame` returns uint8 pixels: 8-bit data passes through unchanged, deeper data is mapped to
0..255 by one of the `SCALING_MODES`:

- 'percentile' (default): per-frame robust stretch, the 0.5th percentile maps to 0 and the 99.5th
  to 255 (the darkest and brightest 0.5% of pixels saturate; isolated hot pixels cannot compress
  the pattern into a few grey levels).
- 'minmax': per-frame minimum -> 0, maximum -> 255 (never clips).
- 'dtype': fixed range 0..2**bits - 1, where bits is the TIFF's BitsPerSample when it is known and
  otherwise the container's (uint16 -> 65535). 12-bit data stored in a 16-bit container with
  BitsPerSample=16 therefore only reaches 4095/65535*255 = 16: a very dark image; use 'fixed' with
  max_value=4095 or 'percentile' for such files. Float data is taken to lie in 0..1.
- 'fixed': 0..max_value (given by the user); values above max_value saturate.

A constant frame (no contrast) in 'percentile'/'minmax' mode falls back to the 'dtype' mapping,
so there is never a division by zero. Grayscale stays (H, W) in `read_frame`; the PIL loaders
return RGB with three identical channels (ImageNet weights expect three channels).

A crop box (`--frame_crop LEFT TOP RIGHT BOTTOM`, pixels of the file, right and bottom exclusive) is cut
out before the scaling, so an overlay, a time stamp or the sample holder outside it changes nothing.
"""
from __future__ import annotations

import functools
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import tifffile
import torch
from PIL import Image, UnidentifiedImageError

from rheed.errors import UserError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
TIFF_EXTENSIONS = ('.tif', '.tiff')
SCALING_MODES = ('percentile', 'minmax', 'dtype', 'fixed')
DEFAULT_PERCENTILES = (0.5, 99.5)


def _is_tiff(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(TIFF_EXTENSIONS)


def _pil_to_array(im: Image.Image) -> tuple[np.ndarray, int | None]:
    """Decodes a PIL image fully; returns the pixels in their native dtype and the bit depth."""
    im.load()
    mode = im.mode
    if mode in ('L', 'RGB'):
        return np.asarray(im), 8
    if mode.startswith('I;16'):
        return np.asarray(im).astype(np.uint16), 16
    if mode == 'I':
        arr = np.asarray(im)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:  # 16-bit PNG on older Pillow
            return arr.astype(np.uint16), 16
        return arr, 32
    if mode == 'F':
        return np.asarray(im), None
    if mode in ('1', 'LA'):
        return np.asarray(im.convert('L')), 8
    if mode == 'P':
        im = im.convert('RGBA') if 'transparency' in im.info else im.convert('RGB')
    elif mode not in ('RGBA',):
        im = im.convert('RGB')  # CMYK, YCbCr, LAB, ...
    return np.asarray(im), 8


def _read_tiff_page(page) -> tuple[np.ndarray, int | None]:
    arr = page.asarray()
    bits = getattr(page, 'bitspersample', None)
    # planar-separate storage gives (samples, H, W); bring samples last
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return arr, bits


def read_raw(path: str | os.PathLike) -> tuple[np.ndarray, int | None]:
    """Fully decodes the first frame of an image file; returns (pixels in the native dtype, bits per
    sample or None when unknown). TIFF goes through tifffile, with PIL as a fallback (e.g. for a
    compression that tifffile cannot decode without imagecodecs); everything else through PIL."""
    if _is_tiff(path):
        try:
            with tifffile.TiffFile(path) as tif:
                return _read_tiff_page(tif.pages[0])
        except Exception as tiff_error:
            try:
                with Image.open(path) as im:
                    return _pil_to_array(im)
            except Exception:
                raise tiff_error from None
    with Image.open(path) as im:
        return _pil_to_array(im)


def _drop_extra_channels(arr: np.ndarray) -> np.ndarray:
    """(H, W, 1) -> (H, W); (H, W, 2) gray+alpha -> (H, W); (H, W, 4) RGBA -> RGB."""
    if arr.ndim == 3:
        if arr.shape[-1] in (1, 2):
            return arr[..., 0]
        if arr.shape[-1] == 4:
            return arr[..., :3]
    return arr


def _dtype_range(arr: np.ndarray, bits: int | None) -> tuple[float, float]:
    if np.issubdtype(arr.dtype, np.floating):
        return 0.0, 1.0
    info = np.iinfo(arr.dtype)
    if bits and 0 < bits < info.bits and info.min == 0:
        return 0.0, float(2 ** bits - 1)
    return float(info.min), float(info.max)


def to_uint8(arr: np.ndarray, scaling: str = 'percentile', max_value: float | None = None,
             percentiles: tuple[float, float] = DEFAULT_PERCENTILES, bits: int | None = None) -> np.ndarray:
    """Maps pixels to uint8. uint8 input is returned as is (same bytes); see the module doc for modes."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if scaling not in SCALING_MODES:
        raise UserError(f"unknown bit scaling '{scaling}' (choose from {', '.join(SCALING_MODES)})")
    data = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    if scaling == 'fixed':
        if max_value is None or max_value <= 0:
            raise UserError("bit scaling 'fixed' needs a positive maximum value (--bit_max)")
        lo, hi = 0.0, float(max_value)
    elif scaling == 'dtype':
        lo, hi = _dtype_range(arr, bits)
    elif scaling == 'minmax':
        lo, hi = float(data.min()), float(data.max())
    else:
        lo, hi = (float(v) for v in np.percentile(data, percentiles))
        if hi <= lo:  # mostly-flat frame: fall back to the full range of this frame
            lo, hi = float(data.min()), float(data.max())
    if hi <= lo:  # constant frame: keep its absolute brightness
        lo, hi = _dtype_range(arr, bits)
    out = (data - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


CropBox = Sequence[int]   # (left, top, right, bottom) in pixels of the file; right and bottom exclusive


def check_crop_box(box: CropBox | None) -> tuple[int, int, int, int] | None:
    """The box as a tuple of ints, or a one-line UserError when it cannot be a box."""
    if box is None:
        return None
    if len(box) != 4 or any(int(v) != v for v in box):
        raise UserError(f"--frame_crop needs four whole numbers LEFT TOP RIGHT BOTTOM, got {' '.join(map(str, box))}")
    left, top, right, bottom = (int(v) for v in box)
    if left < 0 or top < 0 or right <= left or bottom <= top:
        raise UserError(f"--frame_crop {left} {top} {right} {bottom}: needs 0 <= LEFT < RIGHT and 0 <= TOP < BOTTOM "
                        f"(pixels of the frame; right and bottom exclusive)")
    return left, top, right, bottom


def crop_outside(shape: Sequence[int], box: CropBox | None) -> str | None:
    """Why the box does not fit a frame of this (H, W, ...) shape, or None when it fits."""
    if box is None or (box[2] <= shape[1] and box[3] <= shape[0]):
        return None
    return f"the --frame_crop box {' '.join(map(str, box))} reaches outside the {shape[1]}x{shape[0]} frame"


def crop_frame(arr: np.ndarray, box: CropBox | None, name: str | None = None) -> np.ndarray:
    """The box's pixels of a raw (H, W) or (H, W, C) frame; the whole frame when box is None. A box that
    does not fit raises UserError, prefixed with `name` when given."""
    if box is None:
        return arr
    reason = crop_outside(arr.shape, box)
    if reason:
        raise UserError(f"{name}: {reason}" if name else reason)
    left, top, right, bottom = box
    return arr[top:bottom, left:right]


def read_frame(path: str | os.PathLike, scaling: str = 'percentile', max_value: float | None = None,
               percentiles: tuple[float, float] = DEFAULT_PERCENTILES, crop: CropBox | None = None) -> np.ndarray:
    """Reads one frame as uint8, shape (H, W) for grayscale or (H, W, 3) for colour (the crop box only)."""
    arr, bits = read_raw(path)
    arr = crop_frame(_drop_extra_channels(arr), crop)
    return to_uint8(arr, scaling, max_value, percentiles, bits)


def read_stack(path: str | os.PathLike, scaling: str = 'percentile', max_value: float | None = None,
               percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
               crop: CropBox | None = None) -> Iterator[np.ndarray]:
    """Yields every page of a multi-page TIFF as uint8 (one frame for other formats)."""
    if not _is_tiff(path):
        yield read_frame(path, scaling, max_value, percentiles, crop)
        return
    with tifffile.TiffFile(path) as tif:
        for i, page in enumerate(tif.pages):
            arr, bits = _read_tiff_page(page)
            arr = crop_frame(_drop_extra_channels(arr), crop, f"{path}[{i}]")
            yield to_uint8(arr, scaling, max_value, percentiles, bits)


def frame_to_rgb(frame: np.ndarray) -> Image.Image:
    """uint8 (H, W) or (H, W, 3) -> RGB PIL image (grayscale becomes three identical channels)."""
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(frame), mode='RGB')


def load_rgb(path: str, scaling: str = 'percentile', max_value: float | None = None,
             percentiles: tuple[float, float] = DEFAULT_PERCENTILES, crop: CropBox | None = None) -> Image.Image:
    return frame_to_rgb(read_frame(path, scaling, max_value, percentiles, crop))


def make_loader(scaling: str = 'percentile', max_value: float | None = None,
                percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                crop: CropBox | None = None) -> Callable[[str], Image.Image]:
    """Returns path -> RGB PIL image with the given bit scaling and crop box (a picklable functools.partial)."""
    if scaling not in SCALING_MODES:
        raise UserError(f"unknown bit scaling '{scaling}' (choose from {', '.join(SCALING_MODES)})")
    if scaling == 'fixed' and (max_value is None or max_value <= 0):
        raise UserError("bit scaling 'fixed' needs a positive maximum value (--bit_max)")
    return functools.partial(load_rgb, scaling=scaling, max_value=max_value, percentiles=tuple(percentiles),
                             crop=check_crop_box(crop))


def rheed_loader(path: str) -> Image.Image:
    """The project's default loader (percentile scaling), for torchvision's ImageFolder(loader=...)."""
    return load_rgb(path)


def is_image_file(path: str | os.PathLike) -> bool:
    """The one rule for "is this a frame": a supported extension and not hidden (names starting with '.',
    e.g. macOS '._x.png' resource forks, are skipped everywhere)."""
    name = os.path.basename(path)
    return not name.startswith('.') and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Sorted paths of the image files under root. Hidden files and folders (names starting with '.',
    e.g. macOS '._x.png' resource forks) are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.')) if recursive else []
        found.extend(os.path.join(dirpath, f) for f in filenames if is_image_file(f))
    return sorted(found)


def _reason(error: Exception) -> str:
    """A short human reason for a decoding failure."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    low = text.lower()
    if isinstance(error, UnidentifiedImageError):
        return 'not an image: cannot identify image file'
    if 'not a tiff file' in low:
        return 'not an image: not a TIFF file'
    if 'truncated' in low or 'failed to read' in low or 'unexpected end' in low or isinstance(error, EOFError):
        return 'truncated file'
    if isinstance(error, PermissionError):
        return 'permission denied'
    if isinstance(error, MemoryError):
        return 'image too large to decode'
    text = f'{type(error).__name__}: {text}'
    return 'cannot decode: ' + (text[:117] + '...' if len(text) > 120 else text)


def decode_checked(path: str | os.PathLike,
                   crop: CropBox | None = None) -> tuple[np.ndarray | None, int | None, str | None]:
    """Fully decodes one file: (pixels, bits, None) when usable (and large enough for the crop box),
    else (None, None, short reason)."""
    try:
        if not os.path.isfile(path):
            return None, None, 'file not found'
        if os.path.getsize(path) == 0:
            return None, None, 'zero-byte file'
        arr, bits = read_raw(path)
    except Exception as e:  # any decoder failure is a property of the file
        return None, None, _reason(e)
    if arr.size == 0:
        return None, None, 'empty image (no pixels)'
    if arr.ndim not in (2, 3):
        return None, None, f'unsupported shape {tuple(arr.shape)} (expected 2-D or 3-D)'
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4):
        return None, None, f'unsupported channel count {arr.shape[-1]} (expected 1, 3 or 4)'
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        return None, None, 'non-finite pixel values (NaN or inf)'
    misfit = crop_outside(arr.shape, crop)
    if misfit:
        return None, None, misfit
    return arr, bits, None


def check_image(path: str | os.PathLike, crop: CropBox | None = None) -> str | None:
    """Fully decodes one file; returns a short reason when it is unusable, else None."""
    return decode_checked(path, crop)[2]


def verify_files(paths: Sequence[str], skip_corrupt: bool = False, workers: int | None = None,
                 crop: CropBox | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Checks every file once (in a small thread pool), also that the crop box fits it.
    Returns (good paths, [(bad path, reason)]).
    With bad files and skip_corrupt=False, prints them and raises UserError; with skip_corrupt=True,
    prints them as skipped."""
    paths = [str(p) for p in paths]
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    if len(paths) < 2 * workers:
        reasons = [check_image(p, crop) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            reasons = list(pool.map(functools.partial(check_image, crop=crop), paths, chunksize=16))
    good = [p for p, r in zip(paths, reasons) if r is None]
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    if bad:
        for p, r in bad:
            print(f"{'skipped' if skip_corrupt else 'corrupt'}: {p}: {r}", file=sys.stderr)
        if not skip_corrupt:
            crop_only = all('--frame_crop' in r for _, r in bad)
            problem = 'do not fit the --frame_crop box' if crop_only else 'cannot be read'
            raise UserError(f"{len(bad)} of {len(paths)} image files {problem} (listed above); "
                            f"remove or replace them, or pass --skip_corrupt to leave them out")
        print(f"warning: skipped {len(bad)} corrupt of {len(paths)} image files", file=sys.stderr)
    return good, bad


class ImageListDataset(torch.utils.data.Dataset):
    """A dataset over an explicit list of image files: item -> (image, label); label 0 when unlabelled."""

    def __init__(self, files: Sequence[str], labels: Sequence[int] | None = None,
                 transform: Callable | None = None, loader: Callable[[str], Image.Image] = rheed_loader):
        if labels is not None and len(labels) != len(files):
            raise UserError(f"{len(files)} files but {len(labels)} labels")
        labels = [0] * len(files) if labels is None else [int(v) for v in labels]
        self.samples = [(str(f), y) for f, y in zip(files, labels)]
        self.targets = labels
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        img = self.loader(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, label
