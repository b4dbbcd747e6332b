"""scripts/run_experiments.py: a tiny grid runs, continues after an interruption and tabulates its own runs."""
import csv
import json
import statistics
import sys

import pytest

from conftest import make_image_folder, run_cli


def write_grid(tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text(f'''
out = "{tmp_path / 'grid'}"
launcher = "scripts/run_finetune_cpu.sh"
data = ["{tmp_path / 'folds'}/fold_*"]
seeds = [0, 1]
[variables]
EPOCHS = 1
INPUT_SIZE = 32
BATCH = 4
NUM_WORKERS = 0
PYTHON = "{sys.executable}"
[[variants]]
name = "lr2e-4"
[[variants]]
name = "lr1e-3"
LR = "1e-3"
''')
    return config


def test_grid_runs_resumes_and_tabulates(tmp_path):
    for k in range(2):
        root = tmp_path / "folds" / f"fold_{k}"
        for split, seed in (("train", 0), ("val", 1), ("test", 2)):
            make_image_folder(root / split, n_per_class=(4, 4), size=32, seed=seed + 10 * k)
    config = write_grid(tmp_path)
    proc = run_cli(["scripts/run_experiments.py", config, "--max_runs", "3"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 runs in the grid, 0 finished, 8 to run" in proc.stdout and "--max_runs" in proc.stdout
    proc = run_cli(["scripts/run_experiments.py", config], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 runs in the grid, 3 finished, 5 to run" in proc.stdout
    runs = sorted((tmp_path / "grid").glob("*__seed*"))
    assert len(runs) == 8 and all((r / "test_metrics.json").is_file() for r in runs)
    assert json.loads((runs[0] / "run.json").read_text())["kind"] == "finetune"
    rows = {r["group"]: r for r in csv.DictReader(open(tmp_path / "grid" / "comparison" / "comparison.csv"))}
    assert set(rows) == {"lr2e-4", "lr1e-3"}
    for group, row in rows.items():
        values = [json.loads((r / "test_metrics.json").read_text())["macro_f1"] for r in runs
                  if r.name.startswith(group + "__")]
        assert len(values) == 4 and int(row["n_runs"]) == 4
        assert float(row["macro_f1_mean"]) == pytest.approx(statistics.mean(values))
        assert float(row["macro_f1_std"]) == pytest.approx(statistics.stdev(values))
