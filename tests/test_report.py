"""make_report on a fake fine-tuning run directory written by the test (formats of the project contract)."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_pattern_image, run_script_main
from rheed import plotting
from rheed.errors import UserError
from rheed.metrics import compute_metrics
from rheed.report import make_report
from rheed.run_files import selected_epoch

CLASSES = ["rough", "smooth"]
FINETUNE_FILES = [
    "metrics.csv", "metrics.tex", "training_curves.png", "training_curves.pdf", "confusion_val.png",
    "confusion_val.pdf", "confusion_test.png", "confusion_test.pdf", "roc_pr.png", "roc_pr.pdf",
    "fine_class_breakdown.csv", "fine_class_breakdown.png", "fine_class_breakdown.pdf",
    "wrong_test_frames.png", "wrong_test_frames.pdf",
]


def report_cli(argv):
    run_script_main("make_report", argv)


def write_predictions(path: Path, files: list[Path], labels: np.ndarray, probs: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "pred", "label_name", "pred_name"] + [f"prob_{c}" for c in CLASSES])
        for file, label, p in zip(files, labels, probs):
            pred = int(p.argmax())
            writer.writerow([str(file.resolve()), int(label), pred, CLASSES[label], CLASSES[pred]]
                            + [repr(float(v)) for v in p])


def make_split(root: Path, rng: np.random.Generator) -> dict[str, tuple[list[Path], np.ndarray]]:
    """split/{val,test}/{rough,smooth}/*.png plus split/manifest.csv with fine classes."""
    sets, manifest = {}, []
    for split, n_rough, n_smooth in (("val", 4, 6), ("test", 5, 7)):
        files, labels = [], []
        for cls, n in (("rough", n_rough), ("smooth", n_smooth)):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                fine = "island_rough" if cls == "rough" else ("island_smooth" if i % 2 else "layer_smooth")
                path = root / split / cls / f"{fine}__seq{i:03d}_{i:06d}.png"
                write_pattern_image(path, cls, 32, rng)
                files.append(path)
                labels.append(CLASSES.index(cls))
                manifest.append({"path": f"{split}/{cls}/{path.name}", "source": f"/raw/{fine}/{path.name}",
                                 "fine_class": fine, "label": cls, "sequence": f"seq{i:03d}", "frame": i,
                                 "split": split})
        sets[split] = (files, np.array(labels))
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(manifest[0]))
        writer.writeheader()
        writer.writerows(manifest)
    return sets


def make_fake_run(tmp_path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    split = tmp_path / "split"
    sets = make_split(split, rng)
    run = tmp_path / "run"
    run.mkdir()
    results = {}
    for name, (files, labels) in sets.items():
        # probabilities that are mostly right, with a few confident mistakes
        p_rough = np.clip(np.where(labels == 0, 0.75, 0.25) + rng.normal(0, 0.25, len(labels)), 0.01, 0.99)
        probs = np.stack([p_rough, 1 - p_rough], axis=1)
        write_predictions(run / f"predictions_{name}.csv", files, labels, probs)
        results[name] = compute_metrics(labels, probs, CLASSES)
    with open(run / "log.txt", "w") as f:
        for epoch in range(6):
            row = {"train_lr": 1e-3 * (epoch + 1) / 6, "train_loss": 0.7 - 0.05 * epoch,
                   "test_loss": 0.6 - 0.03 * epoch,
                   "test_acc1": 60.0 + 5 * epoch, "test_accuracy": 0.6 + 0.05 * epoch,
                   "test_macro_f1": [0.5, 0.6, 0.72, 0.7, 0.71, 0.69][epoch], "epoch": epoch, "n_parameters": 3000,
                   "test_loss_ema": 0.65 - 0.03 * epoch, "test_accuracy_ema": 0.55 + 0.05 * epoch,
                   "test_macro_f1_ema": 0.5 + 0.04 * epoch}
            f.write(json.dumps(row) + "\n")
    test_metrics = dict(results["test"], loss=0.41, split="test", data_path=str(split),
                        checkpoint=str(run / "checkpoint-best.pth"), checkpoint_epoch=2, best_metric="macro_f1",
                        model="convnextv2_atto", val_metrics=results["val"])
    (run / "test_metrics.json").write_text(json.dumps(test_metrics, indent=2))
    return run


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_writes_every_file_with_the_stored_numbers(tmp_path):
    run = make_fake_run(tmp_path)
    proc = run_cli(["scripts/make_report.py", run], check=True)
    out = run / "report"
    for name in FINETUNE_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "metrics.csv" in proc.stdout

    stored = json.loads((run / "test_metrics.json").read_text())
    rows = read_csv(out / "metrics.csv")
    by_key = {(r["metric"], r["class"]): r for r in rows}
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        assert float(by_key[(key, "")]["test"]) == stored[key]
        assert float(by_key[(key, "")]["val"]) == stored["val_metrics"][key]
    for cls in CLASSES:
        for key in ("precision", "recall", "f1", "support"):
            assert float(by_key[(key, cls)]["test"]) == stored["per_class"][cls][key]
            assert float(by_key[(key, cls)]["val"]) == stored["val_metrics"]["per_class"][cls][key]

    tex = (out / "metrics.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and f"{100 * stored['macro_f1']:.2f}" in tex

    # fine classes: counts per source folder add up to the test predictions
    fine = [r for r in read_csv(out / "fine_class_breakdown.csv") if r["split"] == "test"]
    assert {r["fine_class"] for r in fine} == {"island_rough", "island_smooth", "layer_smooth"}
    assert sum(int(r["n"]) for r in fine) == stored["num_samples"]
    island_smooth = next(r for r in fine if r["fine_class"] == "island_smooth")
    assert island_smooth["label"] == "smooth"
    assert int(island_smooth["pred_rough"]) + int(island_smooth["pred_smooth"]) == int(island_smooth["n"]) == 3


def test_best_epoch_from_checkpoint_epoch_or_best_metric():
    log = [{"epoch": e, "test_macro_f1": v} for e, v in enumerate([0.5, 0.8, 0.8, 0.6])]
    assert selected_epoch(log, {"checkpoint_epoch": 3}) == 3
    assert selected_epoch(log, {"best_metric": "macro_f1"}) == 1  # first of equal maxima
    assert selected_epoch(log, {"best_metric": "last"}) == 3
    assert selected_epoch(log, {}) is None


def test_chinese_labels_fall_back_to_english_without_a_font(tmp_path, monkeypatch, capsys):
    run = make_fake_run(tmp_path)
    monkeypatch.setattr(plotting, "find_cjk_font", lambda: None)
    written = make_report(run, tmp_path / "zh", lang="zh", dpi=60)
    assert "warning: --lang zh needs a Chinese font" in capsys.readouterr().err
    assert {p.name for p in written} == set(FINETUNE_FILES)
    assert "指标" in (tmp_path / "zh" / "metrics.tex").read_text()  # the LaTeX table needs no matplotlib font


def test_chinese_labels_with_a_font(tmp_path):
    font = plotting.find_cjk_font()
    if font is None:
        pytest.skip("no Chinese font installed (e.g. apt install fonts-noto-cjk)")
    run = make_fake_run(tmp_path)
    written = make_report(run, tmp_path / "zh", lang="zh", dpi=60)
    assert {p.name for p in written} == set(FINETUNE_FILES)


def test_font_lookup_by_family_or_file_name():
    assert plotting.find_cjk_font(["DejaVu Sans", "Noto Sans CJK SC"], []) == "Noto Sans CJK SC"
    assert plotting.find_cjk_font(["DejaVu Sans"], ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]) is None


def test_pretraining_run_gets_loss_and_lr_curves(tmp_path):
    run = tmp_path / "pre"
    run.mkdir()
    (run / "log.txt").write_text("".join(json.dumps({"train_lr": 1e-4 * e, "train_loss": 1.0 / (e + 1), "epoch": e,
                                                     "n_parameters": 10}) + "\n" for e in range(4)))
    written = make_report(run, dpi=60)
    assert sorted(p.name for p in written) == ["training_curves.pdf", "training_curves.png"]


def test_missing_files_give_one_line_errors(tmp_path):
    run = make_fake_run(tmp_path)
    (run / "predictions_test.csv").unlink()
    with pytest.raises(SystemExit) as exit_info:
        report_cli([run])
    assert exit_info.value.code == (f"error: {run} lacks predictions_test.csv "
                                    "(written by main_finetune.py when training ends)")
    with pytest.raises(SystemExit) as exit_info:
        report_cli([tmp_path / "nowhere"])
    assert exit_info.value.code == f"error: run directory not found: {tmp_path / 'nowhere'}"


def test_explicit_manifest_must_exist(tmp_path):
    run = make_fake_run(tmp_path)
    with pytest.raises(UserError, match="manifest not found"):
        make_report(run, manifest=tmp_path / "missing.csv", dpi=60)


def test_report_without_manifest_or_val_predictions(tmp_path):
    run = make_fake_run(tmp_path)
    (tmp_path / "split" / "manifest.csv").unlink()
    (run / "predictions_val.csv").unlink()
    names = {p.name for p in make_report(run, dpi=60)}
    assert "fine_class_breakdown.csv" not in names
    assert {"confusion_val.png", "roc_pr.png", "metrics.csv"} <= names  # val matrix from test_metrics.json


def test_reliability_diagram_from_calibration_json(tmp_path):
    from rheed import calibration
    run = make_fake_run(tmp_path)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    record = dict(calibration.calibrate(probs, labels, positive=0),
                  val_reliability=calibration.reliability(probs, labels),
                  test_reliability=calibration.reliability(probs, labels))
    (run / "calibration.json").write_text(json.dumps(record))
    run_cli(["scripts/make_report.py", run], check=True)
    assert (run / "report" / "reliability.png").stat().st_size > 0
