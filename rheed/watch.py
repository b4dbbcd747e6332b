"""Watch mode: follow the folder a camera writes into and classify each new frame once it is complete."""
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from rheed.errors import UserError, warn
from rheed.frames import frame_number
from rheed.imageio import is_image_file
from rheed.inference import Classifier
from rheed.predict import (PredictOptions, TimelineRecorder, default_out_dir, prepare_out_dir,
                           resolve_positive_class, run_options)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop` (a second SIGINT aborts at once); previous handlers are restored on exit."""
    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        print(f"\nreceived {signal.Signals(signum).name}; finishing the current frames...", file=sys.stderr,
              flush=True)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class _Pending:
    size: int
    mtime: float
    failed_at: float | None = None       # first failed decode of the file as it is now
    failed_state: tuple | None = None    # (size, mtime) at that failure


def _ready_files(folder: Path, seen: set[str], pending: dict[str, _Pending], settle: float,
                 report: Callable[[str, str], None]) -> list[Path]:
    """New image files that look completely written: unchanged since the last poll, or older than `settle` s."""
    ready = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        warn(f"cannot list {folder}: {e}")
        return []
    for entry in entries:
        if entry.path in seen or entry.name.startswith(".") or not entry.is_file():
            continue
        path = Path(entry.path)
        if not is_image_file(path):
            seen.add(entry.path)
            report(entry.path, "not an image file")
            continue
        try:
            st = entry.stat()
        except OSError:
            continue  # vanished (e.g. renamed by the camera software)
        previous = pending.get(entry.path)
        stable = previous is not None and previous.size == st.st_size and previous.mtime == st.st_mtime
        if st.st_size > 0 and (stable or now - st.st_mtime >= settle):
            ready.append(path)
        if previous is None:
            pending[entry.path] = _Pending(st.st_size, st.st_mtime)
        else:
            previous.size, previous.mtime = st.st_size, st.st_mtime
    return ready


def _give_up(state: _Pending, incomplete_timeout: float) -> bool:
    """After a failed decode: True once the file has failed, unchanged, for `incomplete_timeout` seconds.
    A file that changed since its first failure (still being written) starts a new wait."""
    now = time.monotonic()
    current = (state.size, state.mtime)
    if state.failed_at is None or state.failed_state != current:
        state.failed_at, state.failed_state = now, current
    return now - state.failed_at >= incomplete_timeout


def watch_folder(classifier: Classifier, folder: str | Path, out_dir: str | Path | None = None,
                 options: PredictOptions | None = None, overwrite: bool = False, poll_interval: float = 0.5,
                 max_frames: int | None = None, timeout: float | None = None, refresh: float = 10.0,
                 stop: threading.Event | None = None, echo: Callable[[str], None] = print,
                 incomplete_timeout: float = 10.0) -> dict:
    """Classifies frames as they appear in `folder` until `stop` is set, `max_frames` frames are done, or no
    new frame arrived for `timeout` seconds. Frames already in the folder are classified first. Rows are
    appended to predictions.csv as they come; summary.json and the timeline are refreshed every `refresh`
    seconds and written once more on exit. A frame that does not decode is retried on every poll while
    the camera may still be writing it; only when it stayed unchanged and undecodable for
    `incomplete_timeout` seconds is it given up and listed under 'skipped' in summary.json."""
    options = options or PredictOptions()
    options.validate()
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--watch folder not found: {folder}")
    positive = resolve_positive_class(classifier.class_names, options.positive_class)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(folder)
    if out_dir.resolve() == folder.resolve():
        raise UserError("--out must not be the watched folder")
    prepare_out_dir(out_dir, overwrite)
    stop = stop or threading.Event()

    skipped: list[tuple[str, str]] = []

    def report(source: str, reason: str) -> None:
        skipped.append((source, reason))
        warn(f"skipping {source}: {reason}")

    recorder = TimelineRecorder(out_dir, classifier.class_names, positive, options)
    seen: set[str] = set()
    pending: dict[str, _Pending] = {}
    start = last_frame_time = last_refresh = time.monotonic()
    name = recorder.positive_name
    echo(f"watching {folder} (poll every {poll_interval:g} s); writing to {out_dir}; stop with Ctrl-C")

    def extra() -> dict:
        elapsed = time.monotonic() - start
        return {"input": str(folder.resolve()), "input_kind": "watch", "output_dir": str(out_dir),
                "skipped": [{"source": s, "reason": r} for s, r in skipped],
                "interrupted": False, "seconds": round(elapsed, 3), **run_options(classifier, options)}

    try:
        while not stop.is_set():
            ready = _ready_files(folder, seen, pending, settle=poll_interval, report=report)
            from rheed.naming import sort_by_frame
            ready = [Path(p) for p in sort_by_frame([str(p) for p in ready], options.pattern)]
            if max_frames is not None:
                ready = ready[:max_frames - len(recorder.probs)]
            for i in range(0, len(ready), options.batch_size):
                images, paths = [], []
                for path in ready[i:i + options.batch_size]:
                    try:
                        images.append(classifier.loader(str(path)))
                        paths.append(path)
                        seen.add(str(path))
                    except UserError as e:  # decoded but unusable (smaller than the --frame_crop box): no retry
                        seen.add(str(path))
                        report(str(path), str(e))
                    except Exception as e:  # maybe still being written: retry on the next polls
                        if _give_up(pending[str(path)], incomplete_timeout):
                            seen.add(str(path))
                            report(str(path), f"cannot decode, unchanged for {incomplete_timeout:g} s ({e})")
                if not images:
                    continue
                for path, probs in zip(paths, classifier.predict_images(images)):
                    row = recorder.add(frame_number(path, options.pattern, len(recorder.probs)), str(path), probs)
                    echo(f"frame {row.frame:>7d}  p_{name}={row.probability:.3f}  smoothed={row.smoothed:.3f}  "
                         f"{row.label:<8s} {path.name}")
                    if row.transition_found:
                        echo(f"transition: smoothed p_{name} >= {options.threshold:g} for {options.persist} frames "
                             f"from frame {recorder.frames[recorder.transition]}")
                last_frame_time = time.monotonic()
            now = time.monotonic()
            if ready and now - last_refresh >= refresh:
                recorder.write_outputs(extra())
                last_refresh = now
            if max_frames is not None and len(recorder.probs) >= max_frames:
                break
            if timeout is not None and now - last_frame_time >= timeout:
                echo(f"no new frame for {timeout:g} s; stopping")
                break
            stop.wait(poll_interval)
    finally:
        recorder.close()
        summary = recorder.write_outputs(extra())
        echo(f"{summary['num_frames']} frames; transition frame: {summary['transition_frame']}; "
             f"results in {out_dir}")
    return summary
