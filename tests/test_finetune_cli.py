"""End-to-end runs of main_finetune.py on CPU with tiny generated data (atto, 64 px)."""
import csv
import json
import re
import time
from pathlib import Path

import pytest
import torch

import models.convnextv2 as convnextv2
from conftest import make_image_folder, run_cli

BASE = ["main_finetune.py", "--model", "convnextv2_atto", "--data_set", "RHEED", "--input_size", "64",
        "--batch_size", "8", "--device", "cpu", "--num_workers", "0"]


def last_error_line(proc):
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def test_full_cpu_finetune(tiny_split, tmp_path, capsys):
    out = tmp_path / "ft"
    start = time.time()
    proc = run_cli(BASE + ["--data_path", tiny_split, "--nb_classes", "2", "--epochs", "2", "--output_dir", out,
                           "--log_dir", out / "tb", "--mixup", "0.8", "--cutmix", "1.0", "--smoothing", "0.1",
                           "--model_ema", "true", "--model_ema_eval", "true", "--model_ema_decay", "0.9",
                           "--layer_decay", "0.9", "--warmup_epochs", "1", "--class_weights", "auto",
                           "--tune_threshold", "true"], check=True)
    print(f"2-epoch CPU fine-tune wall time: {time.time() - start:.1f} s")
    print("\n".join(ln for ln in proc.stdout.splitlines()
                    if ln.startswith(("=====", "samples")) or "precision" in ln or "confusion matrix" in ln))

    lines = [json.loads(ln) for ln in (out / "log.txt").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [0, 1]
    n_train = len(list(Path(tiny_split, "train").rglob("*.png")))
    assert f"optimisation steps: {n_train // 8} per epoch, {2 * (n_train // 8)} in total" in proc.stdout
    for key in ["train_lr", "train_loss", "train_min_lr", "train_weight_decay", "train_grad_norm", "test_loss",
                "test_acc1", "n_parameters", "test_accuracy", "test_macro_f1", "test_balanced_accuracy",
                "test_roc_auc", "test_precision_rough", "test_recall_smooth", "test_f1_smooth",
                "test_confusion_matrix", "test_macro_f1_ema", "test_acc1_ema", "test_confusion_matrix_ema"]:
        assert key in lines[0], key
    assert "test_acc5" not in lines[0] and "train_class_acc" not in lines[0]  # 2 classes; mixup on
    assert sum(map(sum, lines[0]["test_confusion_matrix"])) == 10
    assert 0.0 <= lines[1]["test_macro_f1"] <= 1.0

    for name in ["checkpoint-0.pth", "checkpoint-1.pth", "checkpoint-best.pth", "checkpoint-best-ema.pth"]:
        assert (out / name).is_file(), name
    best = torch.load(out / "checkpoint-best.pth", weights_only=True)
    assert best["class_names"] == ["rough", "smooth"] and best["epoch"] == "best"
    assert best["best_metric"] == "macro_f1" and "model_ema" in best and isinstance(best["args"], dict)
    assert list(out.joinpath("tb").glob("events.out.tfevents.*"))

    report = json.loads((out / "test_metrics.json").read_text())
    for key in ["num_samples", "class_names", "accuracy", "balanced_accuracy", "macro_f1", "per_class",
                "confusion_matrix", "roc_auc", "loss", "split", "data_path", "checkpoint", "checkpoint_epoch",
                "best_metric", "model", "val_metrics"]:
        assert key in report, key
    assert report["split"] == "test" and report["num_samples"] == 10 and report["model"] == "convnextv2_atto"
    assert report["checkpoint"].endswith("checkpoint-best.pth") and report["checkpoint_epoch"] == best["best_epoch"]
    assert report["val_metrics"]["num_samples"] == 10
    assert set(report["per_class"]) == {"rough", "smooth"}
    assert (out / "test_metrics_ema.json").is_file()

    # calibration fitted on val: stored in the checkpoint and calibration.json, used for the test metrics
    fitted = best["calibration"]
    assert fitted["positive_class"] == "rough" and 0.0 < fitted["threshold"] < 1.0 and fitted["temperature"] > 0
    assert fitted["val_nll_after"] <= fitted["val_nll_before"] + 1e-9
    assert fitted["num_val_groups"] == 2      # val/<class>/<class>_NNN.png: one frame sequence per class by name
    assert report["calibration"]["threshold"] == pytest.approx(fitted["threshold"])
    assert report["threshold"] == pytest.approx(fitted["threshold"]) and "argmax_metrics" in report
    assert set(json.loads((out / "calibration.json").read_text())) >= {"temperature", "threshold", "val_reliability",
                                                                     "test_reliability"}

    for split in ["test", "val"]:
        with open(out / f"predictions_{split}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 10
        assert list(rows[0]) == ["path", "label", "pred", "label_name", "pred_name", "prob_rough", "prob_smooth"]
        assert len({r["path"] for r in rows}) == 10 and all(r["path"].startswith("/") for r in rows)
        assert all(abs(float(r["prob_rough"]) + float(r["prob_smooth"]) - 1) < 1e-4 for r in rows)
    with open(out / "predictions_test.csv") as f:
        rows = list(csv.DictReader(f))
    accuracy = sum(r["label"] == r["pred"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(report["accuracy"])
    # the CSV's pred is the thresholded decision on the calibrated probability
    assert all((r["pred_name"] == "rough") == (float(r["prob_rough"]) >= fitted["threshold"]) for r in rows)

    # --eval true on the best checkpoint reproduces the final report (in-process to save a start-up), also with
    # the frame cache, which then holds the evaluated splits only (the training set just gives the classes)
    from main_finetune import get_args_parser, main
    args = get_args_parser().parse_args([str(a) for a in BASE[1:]] + [
        "--data_path", str(tiny_split), "--eval", "true", "--resume", str(out / "checkpoint-best.pth"),
        "--output_dir", str(tmp_path / "eval"), "--frame_cache", "true"])
    capsys.readouterr()
    main(args)
    assert "was trained with" not in capsys.readouterr().out  # same preprocessing flags: no warning
    cached = sorted(p.name.rsplit("_", 1)[-1] for p in (tmp_path / "eval" / "frame_cache").iterdir())
    assert cached == ["test", "val"]
    (eval_dir,) = (tmp_path / "eval" / "eval").iterdir()  # eval/<timestamp>: its own folder
    again = json.loads((eval_dir / "test_metrics.json").read_text())
    assert again["confusion_matrix"] == report["confusion_matrix"]
    assert again["macro_f1"] == pytest.approx(report["macro_f1"])
    assert again["checkpoint_epoch"] == report["checkpoint_epoch"]


@pytest.fixture(scope="module")
def fcmae_checkpoint(tiny_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    run_cli(["main_pretrain.py", "--model", "convnextv2_atto", "--data_path", tiny_split, "--input_size", "64",
             "--epochs", "1", "--batch_size", "8", "--device", "cpu", "--output_dir", out, "--num_workers", "0",
             "--warmup_epochs", "0", "--blr", "1e-3"], check=True)
    return out / "checkpoint-0.pth"


def finetune_frozen(data, ckpt, out):
    """Fine-tunes for one epoch with lr 0, so checkpoint-0.pth holds exactly the loaded weights."""
    run_cli(BASE + ["--data_path", data, "--epochs", "1", "--lr", "0", "--min_lr", "0", "--warmup_epochs", "0",
                    "--disable_eval", "true", "--finetune", ckpt, "--output_dir", out], check=True)
    return torch.load(out / "checkpoint-0.pth", weights_only=True)["model"]


def check_fresh_head(state):
    assert torch.all(state["head.bias"] == 0)
    assert state["head.weight"].shape == (2, 320) and 0 < state["head.weight"].abs().max() < 2e-4


def test_finetune_from_fcmae_loads_every_encoder_weight(tiny_split, fcmae_checkpoint, tmp_path):
    pre = torch.load(fcmae_checkpoint, weights_only=True)["model"]
    encoder = {k[len("encoder."):]: v for k, v in pre.items() if k.startswith("encoder.")}
    state = finetune_frozen(tiny_split, fcmae_checkpoint, tmp_path / "ft")
    assert encoder and set(encoder) == set(state) - {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    for key, value in encoder.items():
        assert torch.equal(state[key].reshape(value.shape), value), key
    assert encoder["stages.2.3.grn.gamma"].abs().sum() > 0  # pre-training moved GRN, so equality means loaded
    check_fresh_head(state)


def test_finetune_from_dense_checkpoint_keeps_grn(tiny_split, tmp_path):
    torch.manual_seed(0)
    dense = convnextv2.convnextv2_atto(num_classes=1000)
    state = dense.state_dict()
    for key in state:
        if ".grn." in key:
            state[key] = torch.randn_like(state[key])
    ckpt = tmp_path / "convnextv2_atto_1k_224_ema.pt"
    torch.save({"model": state}, ckpt)
    loaded = finetune_frozen(tiny_split, ckpt, tmp_path / "ft")
    for key, value in state.items():
        if not key.startswith("head."):
            assert torch.equal(loaded[key], value), key
    check_fresh_head(loaded)


@pytest.fixture(scope="module")
def mismatched_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("mismatch")
    make_image_folder(root / "train", n_per_class=(2, 2), size=32)
    make_image_folder(root / "val", classes=("rough", "flat"), n_per_class=(2, 2), size=32)
    return root


def bad_input_cases(tiny_split, mismatched_split, fcmae_checkpoint, tmp_path):
    return {
        "missing_data": (["--data_path", tmp_path / "nope"], "--data_path not found"),
        "class_mismatch": (["--data_path", mismatched_split], "class folders differ"),
        "unknown_model": (["--model", "convnextv2_mega"], "choose from convnextv2_atto"),
        "other_arch": (["--model", "convnextv2_femto", "--finetune", fcmae_checkpoint], "does not fit the model"),
        "missing_finetune": (["--finetune", tmp_path / "convnextv2_tiny_1k_224_fcmae.pt"], "download_weights.sh"),
        "bad_bool": (["--eval", "maybe"], "boolean value expected"),
        "bad_crop": (["--frame_crop", "10", "0", "5", "8"], "--frame_crop 10 0 5 8: needs 0 <= LEFT < RIGHT"),
        "crop_too_large": (["--frame_crop", "0", "0", "65", "64"], "do not fit the --frame_crop box"),
    }


@pytest.mark.parametrize("case", ["unknown_model", "bad_bool", "class_mismatch", "bad_crop"])
def test_bad_inputs_cli_one_line_error(case, tiny_split, mismatched_split, fcmae_checkpoint, tmp_path):
    out = tmp_path / "out"
    extra, message = bad_input_cases(tiny_split, mismatched_split, fcmae_checkpoint, tmp_path)[case]
    proc = run_cli(BASE + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out] + extra)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    line = last_error_line(proc)
    assert "error: " in line and message in line, proc.stderr[-2000:]
    assert not out.exists()  # nothing written by a failed start


@pytest.mark.parametrize("case", ["missing_data", "class_mismatch", "other_arch", "missing_finetune",
                                  "crop_too_large"])
def test_bad_inputs_raise_user_error(case, tiny_split, mismatched_split, fcmae_checkpoint, tmp_path):
    """The same checks in-process (main() raises UserError, which __main__ turns into `error: ...`, exit 1)."""
    from main_finetune import get_args_parser, main
    from rheed.errors import UserError

    out = tmp_path / "out"
    extra, message = bad_input_cases(tiny_split, mismatched_split, fcmae_checkpoint, tmp_path)[case]
    args = get_args_parser().parse_args([str(a) for a in BASE[1:] + ["--data_path", tiny_split, "--epochs", "1",
                                                                     "--output_dir", out] + extra])
    with pytest.raises(UserError, match=re.escape(message)) as err:
        main(args)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_roc_auc_selection_with_three_classes_fails_before_training(tmp_path):
    root = tmp_path / "three"
    for split in ("train", "val"):
        make_image_folder(root / split, classes=("mixed", "rough", "smooth"), n_per_class=(2, 2, 2), size=32)
    out = tmp_path / "out"
    proc = run_cli(BASE + ["--data_path", root, "--epochs", "1", "--output_dir", out, "--best_metric", "roc_auc"])
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    line = last_error_line(proc)
    assert "--best_metric roc_auc" in line and "2 classes" in line, proc.stderr[-2000:]
    assert not out.exists()


# batch 2 divides every split of tiny_split (24/10/10): with --compile, one graph for training and one for
# evaluation, no extra compilation for a smaller last batch (the longest test in the suite otherwise)
SPEED_RUN = ["--epochs", "1", "--input_size", "32", "--warmup_epochs", "0", "--aug_mode", "rheed", "--seed", "3",
             "--batch_size", "2"]


@pytest.fixture(scope="module")
def plain_run(tiny_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("speed") / "plain"
    run_cli(BASE + ["--data_path", tiny_split, "--output_dir", out] + SPEED_RUN, check=True)
    return json.loads((out / "log.txt").read_text().splitlines()[0])


@pytest.mark.parametrize("flag", ["--channels_last", "--compile", "--fused_optimizer"])
def test_speed_options_train_the_same_numbers(tiny_split, tmp_path, plain_run, flag):
    """Speed options must not change the result: one epoch with the option equals one epoch without."""
    run_cli(BASE + ["--data_path", tiny_split, "--output_dir", tmp_path, flag, "true"] + SPEED_RUN, check=True)
    log = json.loads((tmp_path / "log.txt").read_text().splitlines()[0])
    assert log["train_loss"] == pytest.approx(plain_run["train_loss"], rel=1e-4)
    assert log["test_loss"] == pytest.approx(plain_run["test_loss"], rel=1e-4)
    state = torch.load(tmp_path / "checkpoint-0.pth", weights_only=True)["model"]
    assert set(state) == set(convnextv2.convnextv2_atto(num_classes=2).state_dict())


def test_eval_input_mismatch_names_the_training_flags():
    from rheed.inference import eval_input_mismatch
    trained = {"input_size": 128, "aug_mode": "rheed", "subtract_background": True, "background_mode": "auto",
               "bit_scaling": "percentile", "lr": 2e-4}
    evaluating = dict(trained, aug_mode="upstream", subtract_background=False, lr=None)
    assert eval_input_mismatch(trained, evaluating) == ["--aug_mode rheed", "--subtract_background true"]
    assert eval_input_mismatch(trained, dict(trained, lr=1.0)) == []  # training-only flags do not matter
    assert eval_input_mismatch({"input_size": 64}, {"aug_mode": "rheed"}) == []  # unknown to one side: skipped
    cropped = dict(trained, frame_crop=[10, 0, 600, 450])
    assert eval_input_mismatch(cropped, dict(cropped, frame_crop=None)) == ["--frame_crop 10 0 600 450"]


@pytest.mark.parametrize("workers", [0, 2])
def test_validation_workers_stay_alive_between_epochs_only_with_workers(workers):
    import argparse

    import main_finetune
    args = argparse.Namespace(dist_eval=False, batch_size=4, num_workers=workers, pin_mem=False)
    data = torch.utils.data.TensorDataset(torch.zeros(6, 1))
    assert main_finetune.eval_loader(data, args, persistent=True).persistent_workers == (workers > 0)
    assert not main_finetune.eval_loader(data, args).persistent_workers  # the test split runs once
