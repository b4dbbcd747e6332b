"""One table (CSV + LaTeX), a validation-curve plot and a test-score plot comparing several fine-tuning runs.

Runs are grouped by a regular expression on the run directory's name (e.g. `(.*)_seed\\d+` puts
`fcmae120_seed0` and `fcmae120_seed1` into the group `fcmae120`); each group gets the mean and the
sample standard deviation (ddof=1, i.e. divided by n - 1) of every test metric over its runs.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rheed.errors import UserError
from rheed.plotting import Labels, figure_style, integer_ticks, new_figure, save_figure, series_style
from rheed.report_tables import latex_escape, write_rows_csv
from rheed.run_files import LOG_FILE, METRICS_FILE, read_json, read_log, series


@dataclass
class Run:
    name: str
    path: Path
    metrics: dict
    log: list[dict] | None


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        raise UserError(f"{run_dir} has no {METRICS_FILE} (not a finished fine-tuning run?)")
    metrics = read_json(run_dir / METRICS_FILE)
    if "class_names" not in metrics or "per_class" not in metrics:
        raise UserError(f"{run_dir / METRICS_FILE} has no class_names/per_class")
    log = read_log(run_dir / LOG_FILE) if (run_dir / LOG_FILE).is_file() else None
    return Run(run_dir.resolve().name, run_dir, metrics, log)


def check_same_classes(runs: list[Run]) -> list[str]:
    """The common class list; refuses runs that were trained on different class sets."""
    reference = runs[0]
    for run in runs[1:]:
        if sorted(run.metrics["class_names"]) != sorted(reference.metrics["class_names"]):
            raise UserError(f"runs have different classes: {reference.path} has {reference.metrics['class_names']}, "
                            f"{run.path} has {run.metrics['class_names']}")
    return list(reference.metrics["class_names"])


def group_key(name: str, pattern: re.Pattern | None) -> str:
    """The regex's first group (or whole match) on the run name; the name itself when it does not match."""
    if pattern is None:
        return name
    match = pattern.search(name)
    if match is None:
        return name
    return match.group(1) if pattern.groups else match.group(0)


def group_runs(runs: list[Run], pattern: str | None) -> dict[str, list[Run]]:
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error as e:
        raise UserError(f"--group_by {pattern!r} is not a valid regular expression ({e})") from None
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run.name, regex), []).append(run)
    return groups


def metric_keys(class_names: list[str], binary: bool) -> list[str]:
    keys = ["accuracy", "balanced_accuracy", "macro_f1"] + (["roc_auc"] if binary else [])
    for name in class_names:
        keys += [f"precision_{name}", f"recall_{name}", f"f1_{name}"]
    return keys


def run_value(metrics: dict, key: str) -> float | None:
    for part in ("precision", "recall", "f1"):
        if key.startswith(part + "_"):
            return metrics["per_class"][key[len(part) + 1:]][part]
    return metrics.get(key)


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) over runs; std is None for one run, both None if any value is missing."""
    if not values or any(v is None for v in values):
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)


def summarise(groups: dict[str, list[Run]], keys: list[str]) -> list[dict]:
    rows = []
    for name, runs in groups.items():
        row = {"group": name, "n_runs": len(runs), "runs": ";".join(r.name for r in runs)}
        for key in keys:
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([run_value(r.metrics, key) for r in runs])
        rows.append(row)
    return rows



TEX_HEADS = {"accuracy": "Acc.", "balanced_accuracy": "Bal. acc.", "macro_f1": "Macro-F1", "roc_auc": "ROC-AUC"}


def tex_keys(class_names: list[str], binary: bool) -> list[str]:
    """The LaTeX table shows the overall metrics and per-class F1 (the CSV has everything)."""
    return ["accuracy", "balanced_accuracy", "macro_f1"] + (["roc_auc"] if binary else []) + \
        [f"f1_{name}" for name in class_names]


def write_tex(rows: list[dict], keys: list[str], path: Path) -> Path:
    """booktabs table, values in percent as mean ± std; the best mean of each column in bold."""
    def shown(row, key):
        mean = row[f"{key}_mean"]
        return None if mean is None else round(100 * mean, 2)

    best = {key: max((shown(r, key) for r in rows if shown(r, key) is not None), default=None) for key in keys}
    heads = ["Run", "$n$"] + [TEX_HEADS.get(k, "F1 " + latex_escape(k[3:])) for k in keys]
    lines = ["% Written by scripts/compare_runs.py; needs \\usepackage{booktabs}",
             r"\begin{table}[htbp]", r"\centering", r"\small",
             r"\caption{Test metrics in \%, mean $\pm$ sample standard deviation over $n$ runs; best in bold.}",
             r"\label{tab:compare}", r"\begin{tabular}{lr" + "c" * len(keys) + "}", r"\toprule",
             " & ".join(heads) + r" \\", r"\midrule"]
    for row in rows:
        cells = [latex_escape(row["group"]), str(row["n_runs"])]
        for key in keys:
            value = shown(row, key)
            if value is None:
                cells.append("--")
                continue
            text = f"{value:.2f}"
            if row[f"{key}_std"] is not None:
                text += f" \\pm {100 * row[f'{key}_std']:.2f}"
            cells.append(f"$\\mathbf{{{text}}}$" if value == best[key] else f"${text}$")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def plot_val_f1(groups: dict[str, list[Run]], labels: Labels):
    """Validation macro-F1 per epoch: each group's mean over its runs, with a ±1 std band for several runs."""
    fig = new_figure(6.0, 3.6)
    ax = fig.add_subplot()
    for i, (name, runs) in enumerate(groups.items()):
        curves = [dict(zip(*series(r.log, "test_macro_f1"))) for r in runs if r.log]
        curves = [c for c in curves if c]
        if not curves:
            continue
        epochs = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[e] for e in epochs] for c in curves])
        mean = values.mean(axis=0)
        style = series_style(i, markevery=max(1, len(epochs) // 12))
        ax.plot(epochs, mean, label=labels("runs_n", name, len(curves)), **style)
        if len(curves) > 1:
            std = values.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
    several = any(len(runs) > 1 for runs in groups.values())
    ax.set(xlabel=labels("epoch"), ylabel=labels("compare_f1"),
           title=labels("compare_title" if several else "compare_f1"))
    integer_ticks(ax)
    ax.legend(loc="lower right")
    return fig


def plot_test_f1(groups: dict[str, list[Run]], labels: Labels):
    """Test macro-F1 per group: every run as a dot, the mean with a ±1 std bar beside them."""
    fig = new_figure(max(3.0, 1.2 * len(groups) + 1.5), 3.6)
    ax = fig.add_subplot()
    for i, (name, runs) in enumerate(groups.items()):
        values = [v for v in (run_value(r.metrics, "macro_f1") for r in runs) if v is not None]
        if not values:
            continue
        color = series_style(i)["color"]
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(i - 0.1 + offsets, values, s=14, color=color, alpha=0.7, zorder=3)
        mean, std = mean_std(values)
        ax.errorbar([i + 0.15], [mean], yerr=[std or 0.0], fmt="o", color=color, capsize=4, markersize=6)
    ax.set_xticks(range(len(groups)), [labels("runs_n", n, len(r)) for n, r in groups.items()])
    ax.set(ylabel=labels("compare_test_f1"), title=labels("compare_test_title"))
    ax.set_xlim(-0.6, len(groups) - 0.4)
    return fig


def compare_runs(run_dirs: list[Path], out_dir: Path | None = None, group_by: str | None = None,
                 lang: str = "en", dpi: int = 300) -> list[Path]:
    """Writes comparison.csv, comparison.tex, val_macro_f1.{png,pdf} and test_macro_f1.{png,pdf}; returns the
    files."""
    if not run_dirs:
        raise UserError("no run directories given")
    runs = [load_run(Path(d)) for d in run_dirs]
    names = [r.name for r in runs]
    for run in runs:  # two runs called e.g. ft in different folders: use the paths as given
        if names.count(run.name) > 1:
            run.name = str(run.path)
    class_names = check_same_classes(runs)
    binary = len(class_names) == 2
    groups = group_runs(runs, group_by)
    rows = summarise(groups, metric_keys(class_names, binary))
    if out_dir is None:
        out_dir = Path(*Path(run_dirs[0]).resolve().parts[:-1]) / "comparison"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_rows_csv(rows, out_dir / "comparison.csv"),
               write_tex(rows, tex_keys(class_names, binary), out_dir / "comparison.tex")]
    with figure_style(lang) as labels:
        written += save_figure(plot_val_f1(groups, labels), out_dir, "val_macro_f1", dpi)
        written += save_figure(plot_test_f1(groups, labels), out_dir, "test_macro_f1", dpi)
    return written
