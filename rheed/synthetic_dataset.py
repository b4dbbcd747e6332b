"""Synthetic RHEED data sets on disk: growth runs planned to the real class sizes, written as frames.

``plan_runs(scale=0.1, sequences=None, variety=False) -> list[RunPlan]``
    Sequence ids and frame counts for a data set whose class sizes follow the real data
    (2003 / 567 / 671 frames) times `scale`.
``generate_dataset(out, scale=0.1, sequences=None, seed=0, tiff16=False, width=656, height=492,
overwrite=False, camera_randomize=False, variety=False, workers=1, transition_band=0.0) -> dict``
    Writes ``out/{layer_smooth,island_smooth,island_rough}/seqNNN_FFFFFF.png`` (``.tif`` with
    `tiff16`) and ``out/synthetic_frames.csv`` (file, class, sequence, frame, progress); `variety` adds
    the wide ranges and the laue_smooth, ring_rough and amorphous_halo runs of rheed.synthetic_variety;
    `transition_band` > 0 adds island frames within that roughness of the transition, written to
    ``island_transition`` (no binary label), and keeps the labelled frames outside it.
``save_contact_sheet(data_dir, out_png, per_class=4)``
    A PNG grid of generated frames, one row per class.

Frames are rendered by rheed.synthetic. Every run draws from its own ``np.random.default_rng([seed, run_index])``,
so the same seed gives identical bytes, in one process or several.
"""
import csv
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rheed.errors import UserError
from rheed.synthetic import (CLASS_NAMES, REF_HEIGHT, REF_WIDTH, TRANSITION_CLASS, anchor_transition, band_frames,
                             island_ends, island_progress, layer_progress, quantize, random_params, render_frame,
                             run_rng)

REAL_COUNTS = {"layer_smooth": 2003, "island_smooth": 567, "island_rough": 671}
DEFAULT_SEQUENCES = 4
# island runs start at roughness >= 0.12 and end at >= 0.85 (rheed.synthetic.island_ends): a band of up to
# 0.25 around the transition leaves smooth and rough frames on both sides
MAX_TRANSITION_BAND = 0.25
FILE_RE = re.compile(r"^seq\d{3}_\d{6}\.(png|tif)$")
# Huffman coding without string matching: the same pixels as PNG's default (zlib level 6), ~3x faster to
# write on noisy frames and files ~5 % larger (level 1 matching was slower and ~20 % larger).
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY}


@dataclass(frozen=True)
class RunPlan:
    """One growth run: `n_smooth` frames then `n_rough` frames (layer runs have n_rough = 0); runs of the
    extra kinds of rheed.synthetic_variety have `n_other` frames of their own fine class."""
    kind: str                  # 'layer', 'island', or with variety 'laue', 'ring', 'halo'
    sequence: int
    n_smooth: int
    n_rough: int
    n_other: int = 0

    @property
    def n_frames(self) -> int:
        return self.n_smooth + self.n_rough + self.n_other


def _split_count(total: int, parts: int) -> list:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan_runs(scale: float = 0.1, sequences: int | None = None, variety: bool = False) -> list:
    """Growth runs whose class sizes follow the real data set times `scale`.

    `sequences` is the number of layer runs and of island runs (default 4 each, fewer when a
    class has too few frames). Layer runs get sequence ids 1..L, island runs L+1..L+I; every
    island run has at least one smooth and one rough frame. `variety` adds runs of the extra kinds
    (rheed.synthetic_variety.extra_runs each, half a layer run long) after those.
    """
    if not scale > 0:
        raise UserError(f"--scale must be > 0, got {scale}")
    if sequences is not None and sequences < 1:
        raise UserError(f"--sequences must be >= 1, got {sequences}")
    n = {c: max(1, int(round(REAL_COUNTS[c] * scale))) for c in CLASS_NAMES}
    want = DEFAULT_SEQUENCES if sequences is None else sequences
    n_layer_runs = min(want, n["layer_smooth"])
    n_island_runs = min(want, n["island_smooth"], n["island_rough"])
    plans = []
    for i, count in enumerate(_split_count(n["layer_smooth"], n_layer_runs)):
        plans.append(RunPlan("layer", i + 1, count, 0))
    smooth = _split_count(n["island_smooth"], n_island_runs)
    rough = _split_count(n["island_rough"], n_island_runs)
    for i, (n_s, n_r) in enumerate(zip(smooth, rough)):
        plans.append(RunPlan("island", n_layer_runs + i + 1, n_s, n_r))
    if variety:
        from rheed.synthetic_variety import KIND_CLASS, extra_runs
        length = max(1, n["layer_smooth"] // (2 * n_layer_runs))
        for kind in KIND_CLASS:
            for _ in range(extra_runs(want)):
                plans.append(RunPlan(kind, len(plans) + 1, 0, 0, length))
    return plans


def _all_classes(variety: bool = True, transition: bool = True) -> tuple:
    """Fine-class folders the generator writes: the base classes, plus the variety and transition ones."""
    from rheed.synthetic_variety import VARIETY_CLASSES
    return CLASS_NAMES + (VARIETY_CLASSES if variety else ()) + ((TRANSITION_CLASS,) if transition else ())


def _prepare_output(out: Path, overwrite: bool, classes: tuple) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"output folder {out} is not empty; choose another --out or pass --overwrite")
        # remove only files this generator wrote before, so frames of an older run do not mix in
        for name in _all_classes():
            folder = out / name
            if folder.is_dir():
                for f in folder.iterdir():
                    if f.is_file() and FILE_RE.match(f.name):
                        f.unlink()
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)


def _write_frame(path: Path, frame: np.ndarray, tiff16: bool, cam=None) -> None:
    if tiff16:
        import tifffile
        tifffile.imwrite(path, quantize(frame, bits=12), photometric="minisblack")
    elif cam is not None:
        from rheed.camera import save_8bit
        save_8bit(path, quantize(frame), cam)
    else:
        Image.fromarray(quantize(frame)).save(path, **PNG_OPTIONS)


@dataclass(frozen=True)
class _RunJob:
    out: Path
    plan: RunPlan
    run_index: int
    seed: int
    size: tuple
    tiff16: bool
    camera_randomize: bool
    variety: bool
    transition_band: float


def _frame_class(plan: RunPlan, frame_index: int, n_band: int) -> str:
    from rheed.synthetic_variety import KIND_CLASS
    if plan.kind in KIND_CLASS:
        return KIND_CLASS[plan.kind]
    if plan.kind == "layer":
        return "layer_smooth"
    if frame_index < plan.n_smooth:
        return "island_smooth"
    return TRANSITION_CLASS if frame_index < plan.n_smooth + n_band else "island_rough"


def _write_run(job: _RunJob) -> list:
    """Renders and writes one run; returns its manifest rows. Everything random comes from the run's
    own streams, so runs can be written in any order or process."""
    from rheed import synthetic_variety as V
    plan = job.plan
    rng = run_rng(job.seed, job.run_index)
    cam = response = None
    run_width, run_height = job.size
    if job.camera_randomize:  # its own random stream: the patterns stay those of the same seed without it
        from rheed.camera import apply_camera, random_camera, screen_response   # (rheed.camera imports this module)
        cam = random_camera(np.random.default_rng([job.seed, job.run_index, 7]))
        run_width, run_height = cam.size
        response = screen_response(cam, run_height, run_width)
    p = random_params(rng, run_width, run_height, run_frames=plan.n_frames)
    n_band = 0
    if job.variety:
        p = V.widen(p, rng)
    if plan.kind in V.KIND_CLASS:
        p = V.kind_params(plan.kind, p, rng)
        progress = V.kind_progress(plan.kind, p, plan.n_frames, rng)
    elif plan.kind == "layer":
        progress = layer_progress(p, plan.n_frames)
    else:
        p = anchor_transition(p)
        start, end = island_ends(rng)
        n_band = band_frames(job.transition_band, plan.n_frames, start, end)
        progress = island_progress(plan.n_frames + n_band, plan.n_smooth, start, end, job.transition_band, n_band)
    ext = ".tif" if job.tiff16 else ".png"
    rows = []
    for frame_index, rho in enumerate(progress):
        cls = _frame_class(plan, frame_index, n_band)
        name = f"seq{plan.sequence:03d}_{frame_index:06d}{ext}"
        frame = render_frame(p, rho, rng, t=frame_index)
        if cam is not None:
            frame = apply_camera(frame, cam, response)
        _write_frame(job.out / cls / name, frame, job.tiff16, cam)
        rows.append((f"{cls}/{name}", cls, f"seq{plan.sequence:03d}", frame_index, f"{rho:.4f}"))
    return rows


def generate_dataset(out, scale: float = 0.1, sequences: int | None = None, seed: int = 0,
                     tiff16: bool = False, width: int = REF_WIDTH, height: int = REF_HEIGHT,
                     overwrite: bool = False, progress_callback=None, camera_randomize: bool = False,
                     variety: bool = False, workers: int = 1, transition_band: float = 0.0) -> dict:
    """Writes the synthetic data set; returns {'counts': {class: n}, 'sequences': n, 'files': n}.
    `camera_randomize`: every run gets its own camera and screen (rheed.camera; frame size included).
    `variety`: wide geometry ranges and the extra pattern kinds of rheed.synthetic_variety.
    `workers` > 1 writes runs in that many processes; the files are the same as with one.
    `transition_band` > 0: every island run gets extra frames within this distance of ROUGH_THRESHOLD, in
    TRANSITION_CLASS (streaks and spots mixed: no clear label); its smooth frames stay below the band and its
    rough frames above it, and the island_smooth/island_rough counts are those without the band."""
    if width < 32 or height < 32:
        raise UserError(f"--width and --height must be >= 32, got {width}x{height}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if not 0.0 <= transition_band <= MAX_TRANSITION_BAND:
        raise UserError(f"--transition_band must be in [0, {MAX_TRANSITION_BAND}], got {transition_band}")
    plans = plan_runs(scale, sequences, variety)
    classes = _all_classes(variety, transition_band > 0)
    out = Path(out)
    _prepare_output(out, overwrite, classes)
    jobs = [_RunJob(out, plan, i, seed, (width, height), tiff16, camera_randomize, variety, transition_band)
            for i, plan in enumerate(plans)]
    rows = []
    if workers == 1:
        results = map(_write_run, jobs)
    else:
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_write_run, jobs)
    try:
        for done, run_rows in enumerate(results, 1):
            rows.extend(run_rows)
            if progress_callback is not None:
                progress_callback(done, len(plans))
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    with open(out / "synthetic_frames.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "fine_class", "sequence", "frame", "progress"])
        writer.writerows(rows)
    counts = {c: sum(row[1] == c for row in rows) for c in classes}
    return {"counts": counts, "sequences": len(plans), "files": len(rows)}


def save_contact_sheet(data_dir, out_png, per_class: int = 4, title: str | None = None) -> Path:
    """Saves a grid of frames (one row per class, spread over the sequences) read back from disk."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data_dir = Path(data_dir)
    classes = [c for c in _all_classes() if (data_dir / c).is_dir()] or list(CLASS_NAMES)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(2.6 * per_class, 2.1 * len(classes)),
                             squeeze=False)
    for row, cls in enumerate(classes):
        files = sorted(f for f in (data_dir / cls).glob("seq*_*.*") if FILE_RE.match(f.name))
        if not files:
            raise UserError(f"no generated frames in {data_dir / cls}")
        picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, per_class).round()]
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(picks):
                continue
            frame = _read_back(picks[col])
            ax.imshow(frame[::2, ::2], cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
            ax.set_title(f"{cls}  {picks[col].stem}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=72)
    plt.close(fig)
    return out_png


def _read_back(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        import tifffile
        return tifffile.imread(path).astype(np.float32) * (255.0 / 4095.0)
    return np.asarray(Image.open(path))
