"""The README's quick-start path, end to end at a reduced size (every step but the virtualenv/pip one)."""
import json
import sys

from conftest import run_launcher


def test_quickstart_runs_end_to_end_at_reduced_size(tmp_path):
    out = tmp_path / "quickstart"
    # 79 frames of 11 runs; every split still gets both classes
    env = dict(QUICK_PYTHON=sys.executable, QUICK_OUT=str(out), QUICK_SCALE="0.02", QUICK_SEQUENCES="4",
               MIN_EPOCH_SIZE="32", QUICK_SIZE="64", QUICK_EPOCHS_PRE="1", QUICK_EPOCHS="1", QUICK_BATCH="16",
               QUICK_WORKERS="0", OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    proc = run_launcher("quickstart.sh", env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]

    for step in ("1/6", "2/6", "3/6", "4/6", "5/6", "6/6"):
        assert f"] {step} " in proc.stdout
    assert "QUICK_PYTHON set: no virtualenv, no pip" in proc.stdout

    # every stage left its outputs where the summary says
    split = out / "data_rheed_split"
    assert (split / "manifest.csv").is_file()
    assert {p.name for p in split.iterdir() if p.is_dir()} >= {"train", "val", "test"}
    assert (out / "pretrain" / "checkpoint-0.pth").is_file()
    assert "+ " in proc.stdout and "fine-tuning (from scratch)" in proc.stdout
    ft = out / "finetune"
    for name in ("log.txt", "checkpoint-best.pth", "test_metrics.json", "predictions_test.csv"):
        assert (ft / name).is_file(), name
    assert (ft / "report").is_dir() and any((ft / "report").iterdir())
    assert (ft / "report" / "gradcam" / "gradcam.png").is_file()
    assert (ft / "report" / "occlusion" / "occlusion.png").is_file()
    assert (out / "pretrain" / "report" / "fcmae_viz" / "fcmae_reconstruction.png").is_file()

    metrics = json.loads((ft / "test_metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["class_names"] == ["rough", "smooth"]
    assert 0.0 <= metrics["accuracy"] <= 1.0

    # the closing summary prints the test metrics and where everything is
    tail = proc.stdout[proc.stdout.index("] done in"):]
    assert f"accuracy           {metrics['accuracy']:.4f}" in tail
    assert f"macro_f1           {metrics['macro_f1']:.4f}" in tail
    assert str(ft / "test_metrics.json") in tail and str(ft / "report") in tail
