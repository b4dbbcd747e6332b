"""Decode each frame once: a uint8 memory-mapped file of loaded (and optionally preprocessed) frames.

Without it every epoch decodes every PNG/TIFF again, scales 12/16-bit data to 8 bit and, with background
subtraction, takes the median of every full frame again. With it the first pass writes `frames.u8` and
`index.json` into the cache folder; later epochs, DataLoader workers and the other processes of the same
machine read the arrays through one shared, read-only memory map.

Each frame is loaded and put through the deterministic `preprocess` (e.g. rheed.augment.SubtractBackground)
at full resolution. Training frames are then, when their shorter side is longer than `short_side`, scaled
down once (aspect kept), so later epochs crop and resize a small array instead of the camera frame; with
short_side 0 the stored pixels are exactly what loader and preprocess return and training is identical with
and without the cache, otherwise it differs only by that one extra resampling (about 1 % of the mean input
on RHEED frames). Evaluation frames store the output of the evaluation resize itself: identical tensors.

When the transform starts with rheed.augment.RandomCamera (--camera_aug), that random step is drawn
CAMERA_VIEWS times per frame at build time, each view preprocessed and stored; reading a frame returns one of
its views at random (the views change with --seed, not from epoch to epoch).

The index records each file's size and modification time and the `settings` (bit scaling, preprocessing,
stored size); a changed file or setting rebuilds the cache.
"""
import json
import os
import random
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from rheed.atomic import write_json_atomic

DATA_FILE, INDEX_FILE = 'frames.u8', 'index.json'
# Part of every cache's settings; raised when the cached pixels change for the same settings, so older caches
# are rebuilt (2: the adaptive background level is estimated on a subsample; 3: several views per frame).
VERSION = 3
# Views per frame when the transform starts with a random camera: with p = 2/3 about one in three is the frame
# as recorded; docs/EXPERIMENTS.md section 33 trained on the frame plus two camera variants.
CAMERA_VIEWS = 3


def cache_short_side(frame_cache_size: int | None, input_size: int) -> int:
    """Shorter side of the cached frames: --frame_cache_size, by default twice the input size (a crop of half
    the frame area then still has more pixels than the network input); 0 = as loaded."""
    return 2 * input_size if frame_cache_size is None else frame_cache_size


def shrink(img: Image.Image, short_side: int) -> Image.Image:
    """`img` scaled down (antialiased bicubic, as the transforms resize; aspect kept) so that its shorter side
    is `short_side`; unchanged when it is not larger or short_side is 0."""
    width, height = img.size
    if short_side <= 0 or min(width, height) <= short_side:
        return img
    scale = short_side / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC)


def view_key(path: str) -> int:
    """Seed part of a frame's camera views: its class folder and file name, so that a moved or copied data folder
    draws the same views."""
    return zlib.crc32('/'.join(Path(path).parts[-2:]).encode())


def _stamp(path: str) -> list:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def _to_array(img: Image.Image) -> np.ndarray:
    """(H, W, 1) for gray content (also RGB with equal channels), else (H, W, 3)."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.shape[2] == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
        return arr[..., :1]
    return arr[..., :3]


class FrameCache:
    """Maps a file path to the cached RGB image of it; build() once (main process), then open() anywhere."""

    def __init__(self, cache_dir, settings: dict, short_side: int = 0):
        self.cache_dir = Path(cache_dir)
        self.short_side = short_side
        self.settings = dict(settings, short_side=short_side, version=VERSION)
        self.index: dict = {}
        self._data = None

    def _expected(self, files: Sequence[str]) -> dict:
        return {os.path.abspath(f): _stamp(f) for f in files}

    def is_current(self, files: Sequence[str]) -> bool:
        try:
            index = json.loads((self.cache_dir / INDEX_FILE).read_text())
        except (OSError, ValueError):
            return False
        if index.get('settings') != self.settings or not (self.cache_dir / DATA_FILE).is_file():
            return False
        stamps = {path: entry['stamp'] for path, entry in index['frames'].items()}
        return stamps == self._expected(files)

    def build(self, files: Sequence[str], loader: Callable[[str], Image.Image],
              preprocess: Callable[[Image.Image], Image.Image] | None = None,
              camera: Callable | None = None, views: int = 1, seed: int = 0) -> None:
        """Writes the cache unless it is current; frames are preprocessed at full resolution, then shrunk to
        the cache's short side. With `camera` (called as camera(img, rng)), `views` draws of it per frame are
        stored, each from a generator seeded by (seed, view_key(path), view). The data file is written first and the
        index last, so a killed build leaves no index that points at missing data."""
        if self.is_current(files):
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        (self.cache_dir / INDEX_FILE).unlink(missing_ok=True)
        frames, offset = {}, 0
        with open(self.cache_dir / DATA_FILE, 'wb') as f:
            for path in files:
                loaded, stored = loader(path), []
                path_key = view_key(path)
                for view in range(views):
                    img = loaded
                    if camera is not None:
                        img = camera(img, np.random.default_rng([seed, path_key, view]))
                    if preprocess is not None:
                        img = preprocess(img)
                    arr = np.ascontiguousarray(_to_array(shrink(img, self.short_side)), dtype=np.uint8)
                    f.write(arr.tobytes())
                    stored.append({'offset': offset, 'shape': list(arr.shape)})
                    offset += arr.size
                frames[os.path.abspath(path)] = {'views': stored, 'stamp': _stamp(path)}
        write_json_atomic(self.cache_dir / INDEX_FILE, {'settings': self.settings, 'frames': frames})
        n_views = f" x {views} views" if views > 1 else ""
        print(f"Frame cache: {len(frames)} frames{n_views}, {offset / 2 ** 20:.0f} MB in {self.cache_dir}")

    def open(self) -> 'FrameCache':
        index = json.loads((self.cache_dir / INDEX_FILE).read_text())
        self.index = index['frames']
        self._data = None  # mapped lazily, in each DataLoader worker
        return self

    def __call__(self, path: str) -> Image.Image:
        if self._data is None:
            self._data = np.memmap(self.cache_dir / DATA_FILE, dtype=np.uint8, mode='r')
        views = self.index[os.path.abspath(path)]['views']
        entry = views[random.randrange(len(views))] if len(views) > 1 else views[0]
        h, w, c = entry['shape']
        arr = np.asarray(self._data[entry['offset']:entry['offset'] + h * w * c]).reshape(h, w, c)
        return Image.fromarray(arr[..., 0]).convert('RGB') if c == 1 else Image.fromarray(arr)

    def __getstate__(self):  # DataLoader workers get the index, not an open map
        state = dict(self.__dict__)
        state['_data'] = None
        return state


def cached_pipeline(files: Sequence[str], loader: Callable[[str], Image.Image], transform, cache_dir,
                    settings: dict, run_on_main: Callable = lambda fn: fn(), short_side: int = 0, seed: int = 0):
    """(loader, transform) that read `files` from a frame cache in cache_dir, frames stored with their shorter
    side at most `short_side` (0: as loaded).

    The deterministic steps at the start of `transform` (rheed.augment.whole_frame_steps; for evaluation also the
    resize and centre crop) move into the cache and the rest of the transform is returned; a RandomCamera in front
    of them is drawn CAMERA_VIEWS times per frame (generators seeded from `seed`). With short_side 0 (the
    evaluation sets) the cached frames are then exactly what reading the files gives - the tensors that
    scripts/predict.py sees. `run_on_main(fn)` runs fn once per machine (utils.on_main_process)."""
    from torchvision import transforms as T

    from rheed.augment import Despeckle, PadToAspect, RandomCamera, SubtractBackground
    steps = list(getattr(transform, 'transforms', []))
    camera = steps.pop(0) if steps and isinstance(steps[0], RandomCamera) else None
    n_fixed = 0
    while n_fixed < len(steps) and isinstance(steps[n_fixed], (Despeckle, SubtractBackground, PadToAspect, T.Resize,
                                                                   T.CenterCrop)):
        n_fixed += 1
    preprocess = None
    if n_fixed:
        preprocess = T.Compose(steps[:n_fixed])
    if n_fixed or camera is not None:
        transform = T.Compose(steps[n_fixed:])
    views = CAMERA_VIEWS if camera is not None else 1
    settings = dict(settings, preprocess=repr(preprocess) if preprocess else None)
    if camera is not None:
        settings.update(camera=repr(camera), views=views, seed=seed)
    cache = FrameCache(cache_dir, settings, short_side)
    run_on_main(lambda: cache.build(files, loader, preprocess, camera, views, seed))
    return cache.open(), transform
