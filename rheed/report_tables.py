"""The metrics table of a run as CSV (exact values) and booktabs LaTeX (percentages)."""
import csv
from pathlib import Path


def metric_rows(test_metrics: dict) -> list[dict]:
    """Rows (metric, class, test, val) with the numbers exactly as stored in test_metrics.json."""
    val = test_metrics.get("val_metrics") or {}
    rows = []
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "num_samples"):
        if key in test_metrics:
            rows.append({"metric": key, "class": "", "test": test_metrics[key], "val": val.get(key)})
    for name in test_metrics["class_names"]:
        test_cls = test_metrics["per_class"][name]
        val_cls = (val.get("per_class") or {}).get(name, {})
        for key in ("precision", "recall", "f1", "support"):
            rows.append({"metric": key, "class": name, "test": test_cls[key], "val": val_cls.get(key)})
    return rows


def write_metrics_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "class", "test", "val"])
        for r in rows:
            writer.writerow([r["metric"], r["class"], _csv_value(r["test"]), _csv_value(r["val"])])
    return path


def _csv_value(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


TEX_NAMES = {
    "en": {"accuracy": "Accuracy", "balanced_accuracy": "Balanced accuracy", "macro_f1": "Macro-F1",
           "roc_auc": "ROC-AUC", "num_samples": "Frames", "precision": "Precision", "recall": "Recall",
           "f1": "F1", "support": "Frames", "head": ("Metric", "Class", "Validation", "Test")},
    "zh": {"accuracy": "准确率", "balanced_accuracy": "平衡准确率", "macro_f1": "宏平均F1",
           "roc_auc": "ROC-AUC", "num_samples": "帧数", "precision": "精确率", "recall": "召回率",
           "f1": "F1", "support": "帧数", "head": ("指标", "类别", "验证集", "测试集")},
}


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def _tex_value(metric: str, value) -> str:
    if value is None:
        return "--"
    if metric in ("support", "num_samples"):
        return str(int(value))
    return f"{100.0 * float(value):.2f}"


def write_metrics_tex(rows: list[dict], path: Path, test_metrics: dict, lang: str = "en") -> Path:
    """A booktabs table (needs \\usepackage{booktabs}); rates in percent, counts as integers."""
    names = TEX_NAMES[lang]
    has_val = any(r["val"] is not None for r in rows)
    head = names["head"] if has_val else names["head"][:2] + names["head"][3:]
    model = test_metrics.get("model", "model")
    epoch = test_metrics.get("checkpoint_epoch")
    caption = (f"Test metrics of {latex_escape(str(model))}"
               + (f" (checkpoint of epoch {epoch})" if epoch is not None else "")
               + r". Rates in \%.")
    lines = [r"% Written by scripts/make_report.py; needs \usepackage{booktabs}",
             r"\begin{table}[htbp]", r"\centering", f"\\caption{{{caption}}}", r"\label{tab:metrics}",
             r"\begin{tabular}{ll" + "r" * (len(head) - 2) + "}", r"\toprule",
             " & ".join(head) + r" \\", r"\midrule"]
    previous_class = ""
    for r in rows:
        if r["class"] != previous_class:
            lines.append(r"\midrule")
            previous_class = r["class"]
        cells = [names[r["metric"]], latex_escape(r["class"]) if r["class"] else "--"]
        if has_val:
            cells.append(_tex_value(r["metric"], r["val"]))
        cells.append(_tex_value(r["metric"], r["test"]))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_rows_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
