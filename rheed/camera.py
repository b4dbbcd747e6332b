"""Chamber and camera variation for synthetic frames (`make_synthetic_rheed.py --camera_randomize`).

The pattern renderer (rheed.synthetic) draws one camera look. Real set-ups differ in how the phosphor
screen is seen and recorded, and a classifier should not learn any one of them. Per growth run this module
draws:
- orientation: the camera mounted either way up (shadow edge at the bottom or at the top) or mirrored;
- phosphor screen: a circular screen edge (the screen seen through the viewport; outside it only stray
  light) with radial vignetting, or the full frame;
- response: camera gamma (0.6-1.6) and gain (bright runs saturate the specular spot and bloom);
- compression: 8-bit frames saved as JPEG (quality 40-95) in some runs, as many lab cameras do;
- frame size: one of the common sensor formats (640x480 to 1388x1038).
All factors are applied to the rendered [0, 1] frame, so labels (and the smooth/rough rule) are unchanged.
"""
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from rheed.synthetic_dataset import PNG_OPTIONS

FRAME_SIZES = ((640, 480), (656, 492), (780, 580), (1024, 768), (1280, 1024), (1388, 1038))


@dataclass(frozen=True)
class CameraParams:
    flip_vertical: bool        # shadow edge at the top
    flip_horizontal: bool
    screen: tuple | None       # (cx, cy, radius) in fractions of width / height / min side; None: full frame
    vignetting: float          # intensity loss at the screen edge (0..0.5)
    gamma: float
    gain: float                # > 1 saturates the brightest features
    jpeg_quality: int | None   # None: lossless
    size: tuple                # (width, height)


def random_camera(rng: np.random.Generator) -> CameraParams:
    screen = None
    if rng.random() < 0.6:
        screen = (rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.75))
    return CameraParams(
        flip_vertical=bool(rng.random() < 0.5),
        flip_horizontal=bool(rng.random() < 0.5),
        screen=screen,
        vignetting=float(rng.uniform(0.0, 0.5)),
        gamma=float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
        gain=float(rng.uniform(0.8, 2.5)),
        jpeg_quality=int(rng.integers(40, 96)) if rng.random() < 0.4 else None,
        size=FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))],
    )


def screen_response(cam: CameraParams, height: int, width: int) -> np.ndarray:
    """float32 (height, width) factor of the screen edge and vignetting, in camera coordinates (the same
    for every frame of a run: compute it once and pass it to apply_camera)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if cam.screen is not None:
        cx, cy, radius = cam.screen[0] * width, cam.screen[1] * height, cam.screen[2] * min(height, width)
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / radius
        inside = np.clip((1.0 - r) / 0.03 + 0.5, 0.0, 1.0)          # soft screen edge
        response = inside * (1.0 - cam.vignetting * np.clip(r, 0, 1) ** 2) + (1.0 - inside) * 0.05
    else:
        r = np.sqrt(((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2) / np.sqrt(2)
        response = 1.0 - cam.vignetting * r ** 2
    return response.astype(np.float32)


def apply_camera(frame: np.ndarray, cam: CameraParams, response: np.ndarray | None = None) -> np.ndarray:
    """The [0, 1] frame as this camera records it (before quantisation; JPEG happens at saving).
    `response`: screen_response(cam, *frame.shape), computed here when not given."""
    img = frame.astype(np.float32)
    if cam.flip_vertical:
        img = img[::-1]
    if cam.flip_horizontal:
        img = img[:, ::-1]
    if response is None:
        response = screen_response(cam, *img.shape)
    img = img * response
    img *= np.float32(cam.gain)
    np.clip(img, 0.0, 1.0, out=img)
    img **= np.float32(cam.gamma)
    return img


def save_8bit(path, frame8: np.ndarray, cam: CameraParams) -> None:
    """PNG, or JPEG-compressed pixels (decoded again) in a PNG, so that file names and readers stay the same."""
    if cam.jpeg_quality is None:
        Image.fromarray(frame8).save(path, **PNG_OPTIONS)
        return
    buffer = io.BytesIO()
    Image.fromarray(frame8).save(buffer, format="JPEG", quality=cam.jpeg_quality)
    buffer.seek(0)
    Image.open(buffer).convert("L").save(path, **PNG_OPTIONS)
