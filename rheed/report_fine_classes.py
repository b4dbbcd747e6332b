"""Per fine class (layer_smooth / island_smooth / island_rough) of the split's manifest: how the test frames
were classified."""
import csv
from pathlib import Path

import numpy as np

from rheed.errors import UserError
from rheed.plotting import HATCHES, Labels, new_figure
from rheed.run_files import MANIFEST_FILE, Predictions


def find_manifest(preds: Predictions, test_metrics: dict, explicit: Path | None = None) -> Path | None:
    """--manifest if given (must exist); else manifest.csv in the run's data_path or in any folder above
    the predicted images."""
    if explicit is not None:
        if not explicit.is_file():
            raise UserError(f"manifest not found: {explicit}")
        return explicit
    candidates = []
    if test_metrics.get("data_path"):
        candidates.append(Path(test_metrics["data_path"]) / MANIFEST_FILE)
    if preds.paths:
        candidates += [parent / MANIFEST_FILE for parent in Path(preds.paths[0]).parents]
    return next((c for c in candidates if c.is_file()), None)


def read_manifest(path: Path) -> dict[str, dict]:
    """Manifest rows keyed by the resolved absolute image path (manifest paths are relative to its folder)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "fine_class"} - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
        return {str((path.parent / row["path"]).resolve()): row for row in reader}


def fine_class_rows(preds: Predictions, manifest: dict[str, dict], split: str) -> list[dict]:
    """Per fine class: how many frames, and how many were predicted as each class."""
    by_name: dict[str, list[dict]] = {}
    for row in manifest.values():
        by_name.setdefault(Path(row["path"]).name, []).append(row)
    counts: dict[str, np.ndarray] = {}
    true_label: dict[str, str] = {}
    for path, label, pred in zip(preds.paths, preds.labels, preds.preds):
        row = manifest.get(str(Path(path).resolve()))
        if row is None and len(by_name.get(Path(path).name, [])) == 1:  # split folder moved or copied
            row = by_name[Path(path).name][0]
        if row is None:
            continue
        fine = row["fine_class"]
        counts.setdefault(fine, np.zeros(len(preds.class_names), dtype=np.int64))[pred] += 1
        true_label[fine] = preds.class_names[label]
    rows = []
    for fine in sorted(counts):
        n = int(counts[fine].sum())
        row = {"split": split, "fine_class": fine, "label": true_label[fine], "n": n}
        for i, name in enumerate(preds.class_names):
            row[f"pred_{name}"] = int(counts[fine][i])
        for i, name in enumerate(preds.class_names):
            row[f"frac_{name}"] = counts[fine][i] / n
        row["correct"] = row[f"frac_{true_label[fine]}"]
        rows.append(row)
    return rows


def plot_fine_classes(rows: list[dict], class_names: list[str], labels: Labels):
    """Horizontal stacked bars: fraction of each fine class's test frames predicted as each class."""
    fig = new_figure(6.5, 0.7 * len(rows) + 1.6)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    gray_levels = np.linspace(0.92, 0.35, len(class_names))
    for i, name in enumerate(class_names):
        frac = np.array([r[f"frac_{name}"] for r in rows])
        ax.barh(y, frac, left=left, color=str(gray_levels[i]), edgecolor="black", hatch=HATCHES[i % len(HATCHES)],
                label=labels("predicted_as", name))
        for j, r in enumerate(rows):
            if r[f"pred_{name}"]:
                ax.text(left[j] + frac[j] / 2, j, str(r[f"pred_{name}"]), ha="center", va="center", fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1, "alpha": 0.8})
        left += frac
    ax.set_yticks(y, [f"{r['fine_class']}\n(n={r['n']}, {r['label']})" for r in rows])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel=labels("fraction"), title=labels("fine_breakdown"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(rows) < 3 else -0.18), ncol=len(class_names),
              frameon=False)
    ax.grid(axis="y", visible=False)
    return fig
