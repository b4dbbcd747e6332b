"""How much a classifier's decisions depend on the camera: the labelled frames of a folder are re-recorded the
ways real RHEED recordings differ (green phosphor in colour, camera upside down, burned-in time stamp, high gain
that saturates the pattern, another response curve, 12-bit data, a square or a 16:9 sensor around the frame, a
square sensor the screen fills, lossy compression, hot pixels, a lens that darkens the corners, a camera aimed off
the screen centre sideways or lower), written as files and classified through the same loader and preprocessing
as scripts/predict.py. Each change starts from the 8-bit frame the project's default loader makes of the original
(12/16-bit frames: percentile scaling).

Nothing is learned here: a change that flips many decisions marks a camera difference the model was not trained
to ignore. The pattern and the label of every frame stay the same.

    python benchmarks/camera_robustness.py --checkpoint RUN/checkpoint-best.pth [--checkpoint RUN2/...]
        --data SPLIT/test [--work /tmp/camera_robustness] [--changes none,gain3,jpeg30] [--json out.json]

Per change: macro-F1 and ROC-AUC (mean +- std over the checkpoints) and the share of frames whose decision
differs from the unchanged frame's. The re-recorded frames are written once into --work/<change>/<class>/ and
reused by later calls with the same --work.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rheed.augment import padded_size  # noqa: E402
from rheed.calibration import predict_with_threshold  # noqa: E402
from rheed.imageio import IMAGE_EXTENSIONS, rheed_loader  # noqa: E402
from rheed.inference import Classifier, load_classifier  # noqa: E402
from rheed.metrics import compute_metrics, positive_class_index  # noqa: E402


def time_stamp(gray: np.ndarray) -> np.ndarray:
    image = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    h, w = gray.shape
    font = ImageFont.load_default(size=max(10, h // 22))
    draw.text((0.03 * w, 0.9 * h), "2026-12-03 18:40:12.345  T=580 C  t=812 s", fill=255, font=font)
    draw.text((0.75 * w, 0.03 * h), "RHEED 15 kV", fill=230, font=font)
    return np.asarray(image, dtype=np.float32)


def centred(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    """`gray` brought to height x width about its centre: zeros added where it is smaller, its edges cut off where
    it is larger."""
    out = gray
    for axis, size in ((0, height), (1, width)):
        have = out.shape[axis]
        if size > have:
            before = (size - have) // 2
            out = np.pad(out, [(before, size - have - before) if a == axis else (0, 0) for a in range(2)])
        else:
            start = (have - size) // 2
            out = np.take(out, range(start, start + size), axis=axis)
    return out


def on_sensor(gray: np.ndarray, aspect: float) -> np.ndarray:
    """The frame centred on a sensor of width/height `aspect` that it just fits, black around it (aspect 1: a
    square sensor of the frame's width, black above and below; 16/9: a wide sensor, black left and right)."""
    h, w = gray.shape
    width, height = padded_size(w, h, aspect)
    return centred(gray, height, width)


def square_crop(gray: np.ndarray) -> np.ndarray:
    """The middle of the frame on a square sensor of its height, the sides cut off: a square camera that the
    screen fills (same pattern scale, no black border)."""
    h, w = gray.shape
    return centred(gray, h, min(h, w))


def zoomed(gray: np.ndarray, factor: float) -> np.ndarray:
    """Another lens or screen distance: the picture magnified by `factor` about the frame centre, same frame
    size (factor < 1: the pattern smaller, black around it; factor > 1: the middle enlarged, the edges cut off)."""
    h, w = gray.shape
    scaled = Image.fromarray(gray).resize((round(w * factor), round(h * factor)), Image.BILINEAR)
    return centred(np.asarray(scaled), h, w)


def hot_pixels(gray: np.ndarray) -> np.ndarray:
    """0.05 % of the pixels stuck bright (128-255), at places fixed by the frame size as a sensor's defects are."""
    h, w = gray.shape
    rng = np.random.default_rng(h * 100003 + w)
    n = max(1, round(5e-4 * h * w))
    rows, cols = rng.integers(0, h, n), rng.integers(0, w, n)
    out = gray.copy()
    out[rows, cols] = np.maximum(out[rows, cols], rng.uniform(128, 255, n))
    return out


def vignetting(gray: np.ndarray) -> np.ndarray:
    """Brightness falling to half in the corners (1 - 0.5 r^2, r = 1 at a corner)."""
    h, w = gray.shape
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)
    return gray * (1.0 - 0.5 * r2)


def aimed_off_centre(gray: np.ndarray, axis: int) -> np.ndarray:
    """The camera aimed 15 % of the frame's side off the screen centre (axis 1: to the right, axis 0: lower): the
    picture moves left or up and black comes in on the other side."""
    shift = round(0.15 * gray.shape[axis])
    out = np.zeros_like(gray)
    np.moveaxis(out, axis, 0)[:gray.shape[axis] - shift] = np.moveaxis(gray, axis, 0)[shift:]
    return out


# name -> (file format, change of the 8-bit grey frame as float)
CHANGES: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "none": ("png", lambda g: g),
    "green_phosphor": ("png", lambda g: np.stack([0.15 * g, g, 0.35 * g], axis=-1)),
    "upside_down": ("png", lambda g: g[::-1]),
    "time_stamp": ("png", time_stamp),
    "gain2": ("png", lambda g: 2 * g),
    "gain3": ("png", lambda g: 3 * g),
    "gamma0.7": ("png", lambda g: 255 * (g / 255) ** 0.7),
    "gamma0.5": ("png", lambda g: 255 * (g / 255) ** 0.5),
    "12bit": ("png16", lambda g: 16 * g),
    "square_sensor": ("png", lambda g: on_sensor(g, 1.0)),
    "wide_sensor": ("png", lambda g: on_sensor(g, 16 / 9)),
    "square_crop": ("png", square_crop),
    "zoom_out": ("png", lambda g: zoomed(g, 0.75)),
    "zoom_in": ("png", lambda g: zoomed(g, 4 / 3)),
    "jpeg70": ("jpeg70", lambda g: g),
    "jpeg30": ("jpeg30", lambda g: g),
    "hot_pixels": ("png", hot_pixels),
    "vignetting": ("png", vignetting),
    "off_centre": ("png", lambda g: aimed_off_centre(g, axis=1)),
    "off_centre_vertical": ("png", lambda g: aimed_off_centre(g, axis=0)),
}


def file_suffix(fmt: str) -> str:
    return ".jpg" if fmt.startswith("jpeg") else ".png"


def write_frame(fmt: str, pixels: np.ndarray, path: Path, rng: np.random.Generator) -> None:
    if fmt == "png16":  # 12-bit counts with a little read noise, as a camera writes them
        counts = np.clip(np.round(pixels + rng.normal(0.0, 8.0, pixels.shape)), 0, 4095).astype(np.uint16)
        Image.fromarray(counts).save(path)
    elif fmt.startswith("jpeg"):
        Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).save(path, quality=int(fmt[4:]))
    else:
        Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).save(path)


def labelled_frames(folder: Path) -> list[tuple[Path, str]]:
    frames = [(p, d.name) for d in sorted(folder.iterdir()) if d.is_dir()
              for p in sorted(d.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not frames:
        sys.exit(f"error: no frames in class sub-folders of {folder}")
    return frames


def re_record(frames: list[tuple[Path, str]], work: Path, names: list[str]) -> dict[str, list[tuple[Path, str]]]:
    """Writes every frame under each change (kept from an earlier call when that one finished and has all of
    them); returns change -> [(file, class)] in the order of `frames`."""
    out = {}
    for name in names:
        fmt, change = CHANGES[name]
        listed = [((work / name / label / path.stem).with_suffix(file_suffix(fmt)), label) for path, label in frames]
        done = work / name / ".complete"
        if not (done.exists() and all(p.exists() for p, _ in listed)):
            done.unlink(missing_ok=True)
            rng = np.random.default_rng(0)
            for (path, _), (target, _) in zip(frames, listed):
                target.parent.mkdir(parents=True, exist_ok=True)
                gray = np.asarray(rheed_loader(str(path)).convert("L"), dtype=np.float32)
                write_frame(fmt, change(gray), target, rng)
            done.touch()
        out[name] = listed
    return out


def score(classifier: Classifier, recorded: dict[str, list[tuple[Path, str]]], batch: int = 32) -> dict[str, dict]:
    """change -> macro_f1, roc_auc, changed (share of decisions that differ from those on the unchanged frames)."""
    names = classifier.class_names
    positive = positive_class_index(names)
    rows, unchanged = {}, None
    for name, frames in recorded.items():
        y = [names.index(label) for _, label in frames]
        probs = np.concatenate([classifier.predict_paths([str(p) for p, _ in frames[i:i + batch]])
                                for i in range(0, len(frames), batch)])
        m = compute_metrics(y, probs, names, threshold=classifier.threshold)
        pred = predict_with_threshold(probs, positive, classifier.threshold)
        unchanged = pred if unchanged is None else unchanged
        rows[name] = {"macro_f1": m["macro_f1"], "roc_auc": m.get("roc_auc"),
                      "changed": float(np.mean(pred != unchanged))}
    return rows


def mean_std(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.3f} +- {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, help="fine-tuned checkpoint (repeatable)")
    parser.add_argument("--data", type=Path, required=True, help="folder with one sub-folder of frames per class")
    parser.add_argument("--work", type=Path, default=Path("camera_robustness"),
                        help="where the re-recorded frames are written (reused when present)")
    parser.add_argument("--changes", default=",".join(CHANGES),
                        help=f"comma-separated, from: {', '.join(CHANGES)} ('none' is always included)")
    parser.add_argument("--json", type=Path, help="also write every checkpoint's rows here")
    args = parser.parse_args()

    names = ["none"] + [c for c in args.changes.split(",") if c and c != "none"]
    unknown = [c for c in names if c not in CHANGES]
    if unknown:
        sys.exit(f"error: unknown --changes {unknown}; choose from {list(CHANGES)}")
    if not args.data.is_dir():
        sys.exit(f"error: --data {args.data} is not a folder")
    frames = labelled_frames(args.data)
    classifiers = {ckpt: load_classifier(ckpt) for ckpt in args.checkpoint}
    for ckpt, classifier in classifiers.items():
        unknown = sorted({label for _, label in frames} - set(classifier.class_names))
        if unknown:
            sys.exit(f"error: class folders {unknown} are not classes of {ckpt} ({classifier.class_names})")
    recorded = re_record(frames, args.work, names)
    results = {ckpt: score(classifier, recorded) for ckpt, classifier in classifiers.items()}
    print(f"{len(recorded['none'])} frames of {args.data}, {len(results)} checkpoint(s)")
    print(f"{'change':<16} {'macro-F1':>15} {'ROC-AUC':>15} {'decisions changed':>18}")
    for name in names:
        rows = [r[name] for r in results.values()]
        print(f"{name:<16} {mean_std([r['macro_f1'] for r in rows]):>15} {mean_std([r['roc_auc'] for r in rows]):>15} "
              f"{np.mean([r['changed'] for r in rows]):>18.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
