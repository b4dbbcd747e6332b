"""Frame-by-frame growth monitoring: classify the frames of a run and find the smooth -> rough transition.

Inputs (rheed.frames): one image, a folder of frames (ordered by the frame number in the file name), a
multi-page TIFF (one frame per page) or a video file (decoded with PyAV). rheed.watch follows a folder that a
camera writes into, with the same recorder.

Smoothing is a causal moving average: the smoothed value of frame t is the mean of the raw positive-class
probabilities of frames t-w+1 .. t (fewer at the start). It only looks back, so offline runs and watch mode
give the same numbers; the price is a lag of about (w - 1) / 2 frames. The transition is the first frame
from which the smoothed probability stays >= threshold for `persist` consecutive frames.
"""
import csv
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rheed.atomic import write_json_atomic
from rheed.errors import UserError, warn
from rheed.frames import DecodedFrame, open_input, prefetched
from rheed.inference import Classifier
from rheed.metrics import positive_class_index
from rheed.runs import check_output_dir

OUTPUT_FILES = ("predictions.csv", "summary.json", "timeline.png", "timeline.pdf")
SMOOTHING = "causal moving average"


@dataclass
class PredictOptions:
    threshold: float = 0.5
    smooth_window: int = 5
    persist: int = 10
    positive_class: str | None = None
    batch_size: int = 32
    pattern: str | None = None

    def validate(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise UserError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.smooth_window < 1:
            raise UserError(f"--smooth_window must be >= 1, got {self.smooth_window}")
        if self.persist < 1:
            raise UserError(f"--persist must be >= 1, got {self.persist}")
        if self.batch_size < 1:
            raise UserError(f"--batch_size must be >= 1, got {self.batch_size}")


def resolve_positive_class(class_names: Sequence[str], positive_class: str | None) -> int:
    """Index of the class whose probability is tracked: rheed.metrics.positive_class_index (the rule behind
    ROC-AUC and the stored threshold), except that with more than two classes and none named *rough*
    the class must be given."""
    names = [str(n) for n in class_names]
    if positive_class is not None and positive_class not in names:
        raise UserError(f"--positive_class {positive_class!r} is not a class of this checkpoint "
                        f"({', '.join(names)})")
    if positive_class is None and len(names) != 2 and sum("rough" in n.lower() for n in names) != 1:
        raise UserError(f"cannot tell which class means 'rough' among {', '.join(names)}; "
                        f"pass --positive_class")
    return positive_class_index(names, positive_class)



# ---------------------------------------------------------------------------------------------------
# Outputs

def default_out_dir(input_path: str | Path) -> Path:
    path = Path(input_path).resolve()
    stem = path.name if path.is_dir() else path.stem
    return path.parent / f"{stem}_predictions"


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuses to replace the outputs of an earlier run unless `overwrite`, and outputs it cannot write."""
    check_output_dir(out_dir, '--out', min_free_mb=10)
    existing = [name for name in OUTPUT_FILES if (Path(out_dir) / name).exists()]
    if existing and not overwrite:
        raise UserError(f"{out_dir} already holds {', '.join(existing)}; choose another --out or pass --overwrite")


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    check_out_dir(out_dir, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)


@dataclass
class Row:
    index: int
    frame: int
    source: str
    probability: float
    smoothed: float
    label: str
    transition_found: bool = False


@dataclass
class TimelineRecorder:
    """Appends predictions to predictions.csv row by row and tracks the smoothed probability and transition."""
    out_dir: Path
    class_names: list[str]
    positive: int
    options: PredictOptions
    frames: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    transition: int | None = None  # index into the lists

    def __post_init__(self) -> None:
        self.positive_name = self.class_names[self.positive]
        self._window: deque[float] = deque(maxlen=self.options.smooth_window)
        self._run_start: int | None = None
        self._file = open(self.out_dir / "predictions.csv", "w", newline="")
        self._csv = csv.writer(self._file)
        header = ["frame", "source", f"p_{self.positive_name}", "label", f"p_{self.positive_name}_smoothed"]
        if len(self.class_names) > 2:
            header += [f"prob_{name}" for name in self.class_names]
        self._csv.writerow(header)
        self._file.flush()

    def label_for(self, probs: np.ndarray) -> str:
        if probs[self.positive] >= self.options.threshold:
            return self.positive_name
        others = [i for i in range(len(probs)) if i != self.positive]
        return self.class_names[max(others, key=lambda i: probs[i])]

    def add(self, frame: int, source: str, probs: np.ndarray) -> Row:
        p = float(probs[self.positive])
        self._window.append(p)
        smoothed = float(np.mean(self._window))
        label = self.label_for(probs)
        index = len(self.probs)
        self.frames.append(frame)
        self.sources.append(source)
        self.probs.append(p)
        self.smoothed.append(smoothed)
        self.labels.append(label)

        found = False
        if smoothed >= self.options.threshold:
            if self._run_start is None:
                self._run_start = index
            if self.transition is None and index - self._run_start + 1 >= self.options.persist:
                self.transition = self._run_start
                found = True
        else:
            self._run_start = None

        row = [frame, source, f"{p:.6f}", label, f"{smoothed:.6f}"]
        if len(self.class_names) > 2:
            row += [f"{float(q):.6f}" for q in probs]
        self._csv.writerow(row)
        self._file.flush()
        return Row(index, frame, source, p, smoothed, label, found)

    def summary(self, extra: dict) -> dict:
        n = len(self.probs)
        t = self.transition
        return {
            "num_frames": n,
            "transition_frame": None if t is None else self.frames[t],
            "transition_index": t,
            "transition_source": None if t is None else self.sources[t],
            "positive_class": self.positive_name,
            "fraction_positive": (sum(lbl == self.positive_name for lbl in self.labels) / n) if n else 0.0,
            "fraction_positive_smoothed": (float(np.mean(np.asarray(self.smoothed) >= self.options.threshold))
                                           if n else 0.0),
            "first_frame": self.frames[0] if n else None,
            "last_frame": self.frames[-1] if n else None,
            "threshold": self.options.threshold,
            "smoothing": SMOOTHING,
            "smooth_window": self.options.smooth_window,
            "persist": self.options.persist,
            "class_names": self.class_names,
            **extra,
        }

    def write_outputs(self, extra: dict) -> dict:
        """Writes summary.json and the timeline figure for the rows so far; returns the summary."""
        summary = self.summary(extra)
        if self.probs:
            plot_timeline(self.out_dir, np.asarray(self.frames), np.asarray(self.probs), np.asarray(self.smoothed),
                          self.options.threshold, summary["transition_frame"], self.positive_name)
        write_json_atomic(self.out_dir / "summary.json", summary)
        return summary

    def close(self) -> None:
        self._file.close()


def plot_timeline(out_dir: Path, frames: np.ndarray, probs: np.ndarray, smoothed: np.ndarray, threshold: float,
                  transition_frame: int | None, positive_name: str) -> list[Path]:
    """timeline.png/pdf: raw and smoothed probability over frames, threshold and transition (grayscale-safe)."""
    from rheed.plotting import figure_style, new_figure, save_figure

    with figure_style("en"):
        fig = new_figure(7.0, 3.0)
        ax = fig.add_subplot(1, 1, 1)
        raw_marker = {"marker": ".", "markersize": 3} if len(frames) <= 400 else {}
        ax.plot(frames, probs, color="0.6", linestyle="-", linewidth=0.8, label=f"p({positive_name}) per frame",
                **raw_marker)
        ax.plot(frames, smoothed, color="black", linestyle="-", linewidth=1.8, label="smoothed (causal mean)")
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1.0, label=f"threshold {threshold:g}")
        if transition_frame is not None:
            ax.axvline(transition_frame, color="black", linestyle="-.", linewidth=1.2,
                       label=f"transition: frame {transition_frame}")
            ax.axvspan(transition_frame, frames.max(), facecolor="0.92", linewidth=0, zorder=0)
        ax.set_xlabel("Frame")
        ax.set_ylabel(f"p({positive_name})")
        ax.set_ylim(-0.03, 1.03)
        if len(frames) > 1:
            ax.set_xlim(frames.min(), frames.max())
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return save_figure(fig, out_dir, "timeline", dpi=150)


# ---------------------------------------------------------------------------------------------------
# Offline prediction

def run_options(classifier: Classifier, options: PredictOptions) -> dict:
    return {
        "model": classifier.args.get("model"),
        "checkpoint": classifier.checkpoint_path,
        "input_size": classifier.args.get("input_size"),
        "bit_scaling": classifier.args.get("bit_scaling"),
        "frame_crop": classifier.args.get("frame_crop"),
        "device": str(classifier.device),
        "batch_size": options.batch_size,
        "pattern": options.pattern,
    }


def predict_input(classifier: Classifier, input_path: str | Path, out_dir: str | Path | None = None,
                  options: PredictOptions | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Classifies every frame of the input; writes predictions.csv, timeline.png/pdf and summary.json."""
    from tqdm import tqdm

    options = options or PredictOptions()
    options.validate()
    positive = resolve_positive_class(classifier.class_names, options.positive_class)
    source = open_input(input_path, classifier, options.pattern)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(input_path)
    prepare_out_dir(out_dir, overwrite)

    recorder = TimelineRecorder(out_dir, classifier.class_names, positive, options)
    start = time.perf_counter()
    interrupted = False
    bar = tqdm(total=source.total, unit="frame", disable=not progress, file=sys.stderr)
    batch: list[DecodedFrame] = []

    def flush() -> None:
        probs = classifier.predict_images([f.image for f in batch])
        for f, p in zip(batch, probs):
            recorder.add(f.frame, f.source, p)
        bar.update(len(batch))
        batch.clear()

    try:
        for frame in prefetched(iter(source), depth=2 * options.batch_size):
            batch.append(frame)
            if len(batch) == options.batch_size:
                flush()
        if batch:
            flush()
    except KeyboardInterrupt:
        interrupted = True
        warn("interrupted; writing the results for the frames done so far")
    finally:
        bar.close()
        recorder.close()
    elapsed = time.perf_counter() - start
    if not recorder.probs and not interrupted:
        raise UserError(f"no readable frames in {input_path}")
    summary = recorder.write_outputs({
        "input": str(Path(input_path).resolve()),
        "input_kind": source.kind,
        "output_dir": str(out_dir),
        "skipped": [{"source": s, "reason": r} for s, r in source.skipped],
        "interrupted": interrupted,
        "seconds": round(elapsed, 3),
        "frames_per_second": round(len(recorder.probs) / elapsed, 2) if elapsed > 0 else None,
        **run_options(classifier, options),
    })
    if interrupted:
        raise KeyboardInterrupt
    return summary
