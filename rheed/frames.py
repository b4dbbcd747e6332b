"""The frames of one input, in order: a folder of images, a multi-page TIFF, a video file or one image.

Unreadable items are reported (and listed by the caller) instead of stopping a run.
"""
import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from rheed.errors import UserError, warn
from rheed.imageio import is_image_file
from rheed.inference import Classifier

VIDEO_EXTENSIONS = (".avi", ".mkv", ".mp4", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv")
TIFF_EXTENSIONS = (".tif", ".tiff")
DECODE_THREADS = 2


@dataclass
class DecodedFrame:
    frame: int
    source: str
    image: Image.Image


class FrameSource:
    """An ordered run of frames from one input; unreadable items are reported and skipped."""

    def __init__(self, kind: str, path: Path, total: int | None, frames: Callable[[], Iterator[DecodedFrame]]):
        self.kind = kind
        self.path = path
        self.total = total
        self.skipped: list[tuple[str, str]] = []
        self._frames = frames

    def __iter__(self) -> Iterator[DecodedFrame]:
        return self._frames()

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append((source, reason))
        warn(f"skipping {source}: {reason}")


def frame_number(path: Path, pattern: str | None, default: int) -> int:
    from rheed.naming import parse_sequence_frame
    _, frame = parse_sequence_frame(path.name, pattern)
    return default if frame is None else frame


def inspect_tiff_pages(path: Path) -> tuple[int, str | None]:
    """(pages that can be read, why the file looks truncated or None). A stack cut short (an interrupted
    copy or recording) loses its last pages: the writer's metadata promises more pages than the page chain
    holds, the chain points past the end of the file, or the last page's data does."""
    import logging

    import tifffile

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    log, collect = logging.getLogger("tifffile"), Collect()
    log.addHandler(collect)
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            expected = _promised_pages(tif)
            last = tif.pages[-1] if pages else None
            data_end = max((o + n for o, n in zip(last.dataoffsets, last.databytecounts)), default=0) if last else 0
            size = path.stat().st_size
    except Exception as e:  # tifffile raises several types for damaged files
        raise UserError(f"cannot read TIFF {path}: {e}") from e
    finally:
        log.removeHandler(collect)
    readable = pages - 1 if data_end > size else pages
    if expected is not None and expected > readable:
        return readable, f"truncated multi-page TIFF: {readable} of {expected} pages readable"
    if readable < pages or any("invalid page offset" in m for m in collect.messages):
        return readable, f"truncated multi-page TIFF: the page chain breaks after {readable} readable pages"
    return readable, None


def _promised_pages(tif) -> int | None:
    """Pages announced by the writer's metadata (tifffile's shaped or ImageJ description), if any."""
    if tif.is_imagej and tif.imagej_metadata and tif.imagej_metadata.get("images"):
        return int(tif.imagej_metadata["images"])
    if tif.is_shaped and tif.shaped_metadata:
        page = tif.pages[0]
        shape = tif.shaped_metadata[0].get("shape")
        if shape:
            return max(1, int(np.prod(shape)) // max(int(np.prod(page.shape)), 1))
    return None


def folder_source(folder: Path, classifier: Classifier, pattern: str | None) -> FrameSource:
    from rheed.naming import parse_sequence_frame, sort_by_frame

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if is_image_file(p)]
    source = FrameSource("folder", folder, len(images), lambda: iterate())
    for p in files:
        if not is_image_file(p):
            source.skip(str(p), "not an image file")
    if not images:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = (f" (it has sub-folders {', '.join(subfolders[:5])}{', ...' if len(subfolders) > 5 else ''}: "
                f"give one growth run's folder)" if subfolders else "")
        raise UserError(f"no image frames in {folder}{hint}")
    images = [Path(p) for p in sort_by_frame([str(p) for p in images], pattern)]
    sequences = {parse_sequence_frame(p.name, pattern)[0] for p in images}
    if len(sequences) > 1:
        warn(f"{folder} holds frames of {len(sequences)} sequences ({', '.join(sorted(map(str, sequences)))}); "
             f"they are treated as one run")

    def decode(p: Path):
        try:
            return classifier.loader(str(p))
        except Exception as e:  # any decoder failure: report the file, keep going
            return e

    def finish(i: int, p: Path, future) -> Iterator[DecodedFrame]:
        image = future.result()
        if isinstance(image, UserError):  # decoded, but not usable (a frame smaller than the --frame_crop box)
            source.skip(str(p), str(image))
            return
        if isinstance(image, Exception):
            source.skip(str(p), f"cannot decode ({image})")
            return
        yield DecodedFrame(frame_number(p, pattern, i), str(p), image)

    def iterate() -> Iterator[DecodedFrame]:
        # a few frames decode in parallel (PNG/TIFF decoding releases the GIL), in order and only a few
        # ahead, so that a long video folder is never held in memory
        with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            pending: deque = deque()
            for i, p in enumerate(images):
                pending.append((i, p, pool.submit(decode, p)))
                if len(pending) > 2 * DECODE_THREADS:
                    yield from finish(*pending.popleft())
            while pending:
                yield from finish(*pending.popleft())

    return source


def tiff_stack_source(path: Path, classifier: Classifier, n_pages: int, truncated: str | None = None) -> FrameSource:
    from rheed.imageio import frame_to_rgb, read_stack

    def iterate() -> Iterator[DecodedFrame]:
        # islice stops before a page past the readable ones is decoded; pages come cropped and scaled
        pages = read_stack(str(path), crop=classifier.crop, **classifier.scaling)
        for i, array in enumerate(islice(pages, n_pages)):
            yield DecodedFrame(i, f"{path}[{i}]", frame_to_rgb(array))

    source = FrameSource("tiff_stack", path, n_pages, iterate)
    if truncated:
        source.skip(str(path), f"{truncated}; the missing pages are not predicted")
    return source


def video_source(path: Path, classifier: Classifier) -> FrameSource:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path} has no video stream")
            stream = container.streams.video[0]
            total = stream.frames or None
    except av.error.FFmpegError as e:
        raise UserError(f"cannot open video {path}: {e}") from e

    def iterate() -> Iterator[DecodedFrame]:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            pix_fmt = stream.codec_context.pix_fmt or ""
            if pix_fmt.startswith("gray") and pix_fmt != "gray":
                fmt = "gray16le"  # 9-16 bit grayscale keeps its depth
            elif pix_fmt.startswith("gray"):
                fmt = "gray"
            else:
                fmt = "rgb24"
            try:
                for i, frame in enumerate(container.decode(stream)):
                    name = f"{path}[{i}]"
                    yield DecodedFrame(i, name, classifier.image_from_array(frame.to_ndarray(format=fmt), name=name))
            except av.error.FFmpegError as e:
                warn(f"{path}: decoding stopped after a damaged packet ({e})")

    return FrameSource("video", path, total, iterate)


def open_input(path: str | Path, classifier: Classifier, pattern: str | None = None) -> FrameSource:
    """Chooses the reader for an image, a folder of frames, a multi-page TIFF or a video."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if path.is_dir():
        return folder_source(path, classifier, pattern)
    suffix = path.suffix.lower()
    if suffix in TIFF_EXTENSIONS:
        n_pages, truncated = inspect_tiff_pages(path)
        if n_pages < 1:
            raise UserError(f"cannot read TIFF {path}: {truncated or 'no pages'}")
        if n_pages > 1 or truncated:
            return tiff_stack_source(path, classifier, n_pages, truncated)
    if is_image_file(path):
        try:
            image = classifier.loader(str(path))
        except UserError as e:
            raise UserError(f"{path}: {e}") from e
        except Exception as e:
            raise UserError(f"cannot decode image {path}: {e}") from e
        frame = DecodedFrame(frame_number(path, pattern, 0), str(path), image)
        return FrameSource("image", path, 1, lambda: iter([frame]))
    if suffix in VIDEO_EXTENSIONS:
        return video_source(path, classifier)
    raise UserError(f"unsupported input {path}: expected an image, a folder of frames, a multi-page TIFF or a "
                    f"video ({' '.join(VIDEO_EXTENSIONS)})")


def prefetched(frames: Iterator, depth: int = 64) -> Iterator:
    """Runs the `frames` iterator in a background thread, up to `depth` items ahead, so decoding overlaps
    with the model; exceptions of the producer are raised in the consumer."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in frames:
                items.put(item)
        except BaseException as e:  # handed to the consumer
            items.put(e)
        items.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while True:
        item = items.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
