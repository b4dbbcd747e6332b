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
seeds = [0]
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
    proc = run_cli(["scripts/run_experiments.py", config, "--max_runs", "1"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 runs in the grid, 0 finished, 4 to run" in proc.stdout and "--max_runs" in proc.stdout
    proc = run_cli(["scripts/run_experiments.py", config], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 runs in the grid, 1 finished, 3 to run" in proc.stdout
    runs = sorted((tmp_path / "grid").glob("*__seed*"))
    assert len(runs) == 4 and all((r / "test_metrics.json").is_file() for r in runs)
    assert json.loads((runs[0] / "run.json").read_text())["kind"] == "finetune"
    rows = {r["group"]: r for r in csv.DictReader(open(tmp_path / "grid" / "comparison" / "comparison.csv"))}
    assert set(rows) == {"lr2e-4", "lr1e-3"}
    for group, row in rows.items():
        values = [json.loads((r / "test_metrics.json").read_text())["macro_f1"] for r in runs
                  if r.name.startswith(group + "__")]
        assert len(values) == 2 and int(row["n_runs"]) == 2  # one per fold
        assert float(row["macro_f1_mean"]) == pytest.approx(statistics.mean(values))
        assert float(row["macro_f1_std"]) == pytest.approx(statistics.stdev(values))


FAKE_LAUNCHER = r'''#!/usr/bin/env bash
# stands in for a training launcher: records where it ran, takes a second, writes a finished run's metrics
set -euo pipefail
mkdir -p "$OUTPUT"
seed="${EXTRA_ARGS##*--seed }"
echo "start $(date +%s.%N) ${CUDA_VISIBLE_DEVICES:-none} ${GPUS:-unset}" > "$OUTPUT/where.txt"
if [ "${FAIL_SEED:-x}" = "$seed" ]; then echo "boom" >&2; exit 3; fi
sleep 1
f1=$(awk -v s="$seed" 'BEGIN { printf "%.2f", 0.5 + s / 10 }')
cat > "$OUTPUT/test_metrics.json" <<JSON
{"class_names": ["rough", "smooth"], "accuracy": $f1, "balanced_accuracy": $f1, "macro_f1": $f1, "roc_auc": $f1,
 "per_class": {"rough": {"precision": $f1, "recall": $f1, "f1": $f1, "support": 5},
               "smooth": {"precision": $f1, "recall": $f1, "f1": $f1, "support": 5}}}
JSON
echo "end $(date +%s.%N)" >> "$OUTPUT/where.txt"
'''


def fake_grid(tmp_path, seeds=(0, 1, 2, 3), extra=""):
    launcher = tmp_path / "fake_launcher.sh"
    launcher.write_text(FAKE_LAUNCHER)
    (tmp_path / "split").mkdir(exist_ok=True)
    config = tmp_path / "grid.toml"
    config.write_text(f'out = "{tmp_path / "grid"}"\nlauncher = "{launcher}"\ndata = ["{tmp_path / "split"}"]\n'
                      f'seeds = {list(seeds)}\n{extra}\n[[variants]]\nname = "a"\n')
    return config


def test_devices_run_one_per_gpu_at_the_same_time(tmp_path):
    config = fake_grid(tmp_path)
    proc = run_cli(["scripts/run_experiments.py", config, "--devices", "0,1"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    where = {}
    for s in range(4):
        lines = (tmp_path / "grid" / f"a__split__seed{s}" / "where.txt").read_text().split("\n")
        start, device, gpus = lines[0].split()[1:]
        where[s] = (float(start), float(lines[1].split()[1]), device, gpus)
    assert {w[3] for w in where.values()} == {"1"} and {w[2] for w in where.values()} == {"0", "1"}
    assert where[1][0] < where[0][1]  # the second run started before the first ended
    assert "on GPU 0" in proc.stdout and "on GPU 1" in proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "grid" / "comparison" / "comparison.csv")))
    assert len(rows) == 1 and float(rows[0]["macro_f1_mean"]) == pytest.approx(0.65)
    # everything finished: a second call runs nothing
    again = run_cli(["scripts/run_experiments.py", config, "--devices", "0,1"], timeout=120)
    assert "4 runs in the grid, 4 finished, 0 to run" in again.stdout


def test_a_failed_run_is_named_and_the_others_finish(tmp_path):
    config = fake_grid(tmp_path, seeds=(0, 1, 2), extra='[variables]\nFAIL_SEED = "1"')
    proc = run_cli(["scripts/run_experiments.py", config, "--devices", "0,1"], timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: run ") and "a__split__seed1 failed (exit 3)" in proc.stderr
    assert (tmp_path / "grid" / "a__split__seed0" / "test_metrics.json").is_file()
    assert "boom" in (tmp_path / "grid" / "a__split__seed1" / "launcher.log").read_text()


def test_submitit_local_executor_runs_every_run_as_a_job(tmp_path):
    pytest.importorskip("submitit")
    config = fake_grid(tmp_path, seeds=(0, 1))
    proc = run_cli(["scripts/run_experiments.py", config, "--submitit", "--submitit_cluster", "local"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("submitted job ") == 2
    for s in (0, 1):
        assert (tmp_path / "grid" / f"a__split__seed{s}" / "test_metrics.json").is_file()
    assert any((tmp_path / "grid" / "submitit").iterdir())  # the jobs' own logs
    assert (tmp_path / "grid" / "comparison" / "comparison.csv").is_file()


def test_devices_and_submitit_exclude_each_other(tmp_path):
    proc = run_cli(["scripts/run_experiments.py", fake_grid(tmp_path), "--devices", "0", "--submitit"])
    assert proc.returncode == 1 and proc.stderr.strip() == "error: choose one of --devices and --submitit"


@pytest.mark.parametrize("name", ["cpu_scratch_vs_fcmae.toml", "cpu_worked_example.toml", "gpu_worked_example.toml"])
def test_shipped_grids_plan_runs_their_launcher_accepts(name, tmp_path):
    import subprocess
    from rheed import grid
    config = grid.load_config(grid.REPO / "configs" / name)
    for k in range(2):
        (tmp_path / f"fold_{k}").mkdir()
    config["data"] = [str(tmp_path / "fold_*")]
    runs = grid.plan_runs(config)
    assert len(runs) == len(config["variants"]) * 2 * len(config["seeds"])
    for variant, run in zip(config["variants"], runs[::2 * len(config["seeds"])]):
        proc = subprocess.run(["bash", config["launcher"]], cwd=grid.REPO, capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", **run["env"], "DRY_RUN": "1"})
        assert proc.returncode == 0, proc.stderr
        assert f"--model {variant.get('MODEL', 'convnextv2_atto')}" in proc.stdout
        assert f"--seed {config['seeds'][0]}" in proc.stdout
