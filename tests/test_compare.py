"""compare_runs: mean and sample std over seeds, LaTeX bolding, refusal of different class sets."""
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_script_main
from rheed.compare import compare_runs, group_key
from rheed.errors import UserError


def compare_cli(argv):
    run_script_main("compare_runs", argv)


def fake_run(root: Path, name: str, accuracy: float, macro_f1: float, classes=("rough", "smooth"),
             epochs: int = 4) -> Path:
    run = root / name
    run.mkdir(parents=True)
    per_class = {c: {"precision": accuracy - 0.01 * i, "recall": accuracy + 0.01 * i, "f1": macro_f1 + 0.02 * (i - 0.5),
                     "support": 10} for i, c in enumerate(classes)}
    metrics = {"num_samples": 20, "class_names": list(classes), "accuracy": accuracy,
               "balanced_accuracy": accuracy - 0.02,
               "macro_f1": macro_f1, "per_class": per_class, "confusion_matrix": [[5, 5], [5, 5]],
               "roc_auc": accuracy + 0.05, "checkpoint_epoch": epochs - 1, "best_metric": "macro_f1"}
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    with open(run / "log.txt", "w") as f:
        for e in range(epochs):
            row = {"epoch": e, "train_loss": 1.0 / (e + 1), "test_macro_f1": macro_f1 * (e + 1) / epochs}
            f.write(json.dumps(row) + "\n")
    return run


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["group"]: r for r in csv.DictReader(f)}


def test_mean_and_sample_std_over_seeds(tmp_path):
    fcmae = [fake_run(tmp_path, f"fcmae120_seed{s}", acc, f1) for s, (acc, f1) in
             enumerate([(0.90, 0.88), (0.92, 0.91), (0.94, 0.91)])]
    imagenet = [fake_run(tmp_path, f"imagenet_seed{s}", acc, f1) for s, (acc, f1) in
                enumerate([(0.84, 0.83), (0.83, 0.82)])]
    single = fake_run(tmp_path, "scratch", 0.80, 0.79)
    out = tmp_path / "cmp"
    compare_cli([*fcmae, *imagenet, single, "--group-by", r"(.*)_seed\d+", "--out", out, "--dpi", 60])
    rows = read_rows(out / "comparison.csv")
    assert list(rows) == ["fcmae120", "imagenet", "scratch"]
    assert rows["fcmae120"]["n_runs"] == "3"
    assert float(rows["fcmae120"]["accuracy_mean"]) == pytest.approx(0.92)
    assert float(rows["fcmae120"]["accuracy_std"]) == pytest.approx(0.02)  # ddof=1: sqrt((0.02² + 0 + 0.02²) / 2)
    assert float(rows["fcmae120"]["macro_f1_std"]) == pytest.approx(np.std([0.88, 0.91, 0.91], ddof=1))
    assert float(rows["imagenet"]["f1_rough_mean"]) == pytest.approx(np.mean([0.82, 0.81]))
    assert rows["scratch"]["n_runs"] == "1" and rows["scratch"]["accuracy_std"] == ""

    tex = (out / "comparison.tex").read_text()
    assert r"$\mathbf{92.00 \pm 2.00}$" in tex  # best accuracy bold, mean ± std in percent
    assert r"$83.50 \pm 0.71$" in tex and "$80.00$" in tex
    assert (out / "val_macro_f1.png").stat().st_size > 0 and (out / "val_macro_f1.pdf").stat().st_size > 0


def test_one_row_per_run_without_grouping(tmp_path):
    runs = [fake_run(tmp_path, n, 0.9, 0.9) for n in ("a", "b")]
    written = compare_runs(runs, dpi=60)
    assert written[0] == tmp_path / "comparison" / "comparison.csv"
    assert list(read_rows(written[0])) == ["a", "b"]


def test_group_key_uses_first_group_or_whole_match():
    assert group_key("fcmae120_seed3", re.compile(r"(.*)_seed\d+")) == "fcmae120"
    assert group_key("fcmae120_seed3", re.compile(r"fcmae\d+")) == "fcmae120"
    assert group_key("other", re.compile(r"(.*)_seed\d+")) == "other"


def test_refuses_different_class_sets(tmp_path):
    binary = fake_run(tmp_path, "binary", 0.9, 0.9)
    fine = fake_run(tmp_path, "fine", 0.9, 0.9, classes=("island_rough", "island_smooth", "layer_smooth"))
    with pytest.raises(SystemExit) as exit_info:
        compare_cli([binary, fine, "--out", tmp_path / "cmp"])
    assert str(exit_info.value.code).startswith("error: runs have different classes:")
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(UserError, match="has no test_metrics.json"):
        compare_runs([binary, tmp_path / "empty"])


def test_test_score_figure_shows_every_run_and_the_group_mean(tmp_path):
    from rheed.compare import group_runs, load_run, plot_test_f1
    from rheed.plotting import Labels
    runs = [load_run(fake_run(tmp_path, f"a_seed{s}", 0.9, f1)) for s, f1 in enumerate([0.70, 0.80, 0.90])]
    runs.append(load_run(fake_run(tmp_path, "b_seed0", 0.9, 0.60)))
    fig = plot_test_f1(group_runs(runs, r"(.*)_seed\d+"), Labels())
    ax = fig.axes[0]
    from matplotlib.collections import PathCollection
    dots = [c.get_offsets()[:, 1].tolist() for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted(map(sorted, dots)) == [pytest.approx([0.6]), pytest.approx([0.7, 0.8, 0.9])]
    means = sorted(float(line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "o")
    assert means == pytest.approx([0.6, 0.8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a (n=3)", "b (n=1)"]
    written = compare_runs([r.path for r in runs], out_dir=tmp_path / "cmp", group_by=r"(.*)_seed\d+", dpi=60)
    assert tmp_path / "cmp" / "test_macro_f1.png" in written
