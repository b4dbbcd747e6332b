"""Two-process CPU (gloo) fine-tuning through torchrun; odd-sized eval sets test duplicate removal."""
import csv
import json

import pytest

from conftest import make_image_folder, run_cli


@pytest.fixture(scope="module")
def odd_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd_split")
    make_image_folder(root / "train", n_per_class=(8, 8), size=32, seed=0)
    make_image_folder(root / "val", n_per_class=(3, 4), size=32, seed=1)  # 7: the sampler pads to 8
    make_image_folder(root / "test", n_per_class=(2, 3), size=32, seed=2)  # 5: padded to 6
    return root


def test_torchrun_two_cpu_processes(odd_split, tmp_path):
    out = tmp_path / "ddp"
    proc = run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main_finetune.py",
                    "--model", "convnextv2_atto", "--data_set", "RHEED", "--data_path", odd_split,
                    "--input_size", "32", "--batch_size", "4", "--epochs", "1", "--device", "cpu",
                    "--num_workers", "0", "--output_dir", out, "--mixup", "0.8", "--warmup_epochs", "0",
                    "--class_weights", "auto"], check=True)
    assert "backend gloo" in proc.stdout

    lines = [json.loads(ln) for ln in (out / "log.txt").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [0]
    assert sum(map(sum, lines[0]["test_confusion_matrix"])) == 7
    for name in ["checkpoint-0.pth", "checkpoint-best.pth", "test_metrics.json", "predictions_test.csv",
                 "predictions_val.csv"]:
        assert (out / name).is_file(), name

    report = json.loads((out / "test_metrics.json").read_text())
    assert report["num_samples"] == 5 and report["val_metrics"]["num_samples"] == 7
    assert sum(map(sum, report["confusion_matrix"])) == 5
    assert [report["per_class"][c]["support"] for c in ("rough", "smooth")] == [2, 3]
    with open(out / "predictions_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and len({r["path"] for r in rows}) == 5
