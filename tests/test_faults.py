"""Foreseeable mistakes end with one 'error:' line before any work, and never change an existing run's files."""
import json
import os
from pathlib import Path

import pytest

from conftest import make_image_folder, run_cli
from rheed.errors import UserError

FINETUNE = ["main_finetune.py", "--model", "convnextv2_atto", "--data_set", "RHEED", "--input_size", "32",
            "--batch_size", "4", "--device", "cpu", "--num_workers", "0", "--warmup_epochs", "0"]
PRETRAIN = ["main_pretrain.py", "--model", "convnextv2_atto", "--input_size", "32", "--batch_size", "4",
            "--device", "cpu", "--num_workers", "0", "--warmup_epochs", "0"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(proc) -> str:
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), proc.stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def finished_run(tiny_split, tmp_path_factory):
    """A finished one-epoch fine-tuning run (atto, 32 px)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    run_cli(FINETUNE + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out], check=True)
    owner = json.loads((out / "run.json").read_text())
    assert owner["kind"] == "finetune" and owner["model"] == "convnextv2_atto"
    assert owner["data_path"] == os.path.abspath(tiny_split) and len(owner["run_id"]) == 12
    return out


def test_another_model_into_a_finished_run_is_refused(finished_run, tiny_split):
    before = snapshot(finished_run)
    proc = run_cli(FINETUNE[:2] + ["convnextv2_femto"] + FINETUNE[3:]
                   + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", finished_run])
    message = one_line_error(proc)
    assert "belongs to another run" in message and "convnextv2_atto" in message and "--overwrite" in message
    assert snapshot(finished_run) == before


def test_best_checkpoint_without_run_record_is_not_overwritten(finished_run, tiny_split, tmp_path):
    """A folder left by --save_ckpt_num 0 or an older version: checkpoint-best.pth and reports, no run.json."""
    out = tmp_path / "old"
    out.mkdir()
    for name in ("checkpoint-best.pth", "log.txt", "test_metrics.json", "predictions_test.csv"):
        (out / name).write_bytes((finished_run / name).read_bytes())
    before = snapshot(out)
    proc = run_cli(FINETUNE + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out])
    assert "holds files of another run" in one_line_error(proc)
    assert snapshot(out) == before


def test_same_run_again_does_not_restart_over_its_checkpoints(finished_run, tiny_split):
    """The finished run's own command again (its numbered checkpoint resumes: nothing to do) and with
    --auto_resume false (refused): its best checkpoint and reports stay."""
    before = snapshot(finished_run)
    proc = run_cli(FINETUNE + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", finished_run,
                               "--auto_resume", "false"])
    assert "did not resume" in one_line_error(proc)
    assert snapshot(finished_run) == before


def test_eval_writes_its_own_folder(finished_run, tiny_split):
    before = snapshot(finished_run)
    proc = run_cli(FINETUNE + ["--data_path", tiny_split, "--eval", "true", "--output_dir", finished_run,
                               "--resume", finished_run / "checkpoint-best.pth"], check=True)
    evals = list((finished_run / "eval").iterdir())
    assert len(evals) == 1 and (evals[0] / "test_metrics.json").is_file()
    assert f"Evaluation reports go to {evals[0]}" in proc.stdout
    assert {k: v for k, v in snapshot(finished_run).items() if not k.startswith("eval/")} == before


def test_overwrite_replaces_the_previous_run(finished_run, tiny_split, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for name, data in snapshot(finished_run).items():
        if "/" not in name:
            (out / name).write_bytes(data)
    (out / "notes.txt").write_text("mine")
    run_cli(FINETUNE[:2] + ["convnextv2_femto"] + FINETUNE[3:]
            + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out, "--overwrite", "true"], check=True)
    assert json.loads((out / "run.json").read_text())["model"] == "convnextv2_femto"
    assert len((out / "log.txt").read_text().splitlines()) == 1
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("extra, expected", [
    (["--input_size", "16"], "too small"),
    (["--epochs", "0"], "at least one epoch"),
])
def test_bad_sizes_fail_before_a_folder_is_made(tiny_split, tmp_path, extra, expected):
    out = tmp_path / "new"
    proc = run_cli(FINETUNE + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out] + extra)
    assert expected in one_line_error(proc)
    assert not out.exists()


def test_single_class_training_set_is_refused(tmp_path):
    data = tmp_path / "split"
    for split in ("train", "val"):
        make_image_folder(data / split, classes=("smooth",), n_per_class=(6,), size=32)
    proc = run_cli(FINETUNE + ["--data_path", data, "--epochs", "1", "--output_dir", tmp_path / "o"])
    assert "single class folder" in one_line_error(proc)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("script", ["finetune", "pretrain"])
def test_output_dir_that_is_a_file_or_read_only(tiny_split, tmp_path, script):
    base = FINETUNE if script == "finetune" else PRETRAIN
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    proc = run_cli(base + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", a_file])
    assert "is a file" in one_line_error(proc)
    assert a_file.read_text() == "x"
    if os.geteuid() == 0:
        return  # root writes anywhere: the read-only case is staged in-process below
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = run_cli(base + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", locked / "run"])
        assert "not writable" in one_line_error(proc)
    finally:
        locked.chmod(0o700)


def test_pretrain_auto_resume_false_into_a_run_is_refused(tiny_split, tmp_path):
    out = tmp_path / "pre"
    run_cli(PRETRAIN + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out], check=True)
    before = snapshot(out)
    proc = run_cli(PRETRAIN + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out,
                               "--auto_resume", "false"])
    assert "did not resume" in one_line_error(proc)
    (out / "checkpoint-0.pth").write_bytes(b"truncated")  # every numbered checkpoint unreadable
    before = snapshot(out)
    proc = run_cli(PRETRAIN + ["--data_path", tiny_split, "--epochs", "2", "--output_dir", out])
    assert "did not resume" in one_line_error(proc)
    assert snapshot(out) == before


def test_stale_temporary_checkpoints_are_removed_at_start(tiny_split, tmp_path):
    out = tmp_path / "pre"
    out.mkdir()
    stale = out / ".checkpoint-3.pth.abc123.tmp"
    stale.write_bytes(b"\0" * 1000)
    run_cli(PRETRAIN + ["--data_path", tiny_split, "--epochs", "1", "--output_dir", out], check=True)
    assert not stale.exists() and (out / "checkpoint-0.pth").is_file()


def test_predict_and_export_out_that_is_a_file(finished_run, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    frames = tmp_path / "frames"
    make_image_folder(frames, classes=("run",), n_per_class=(2,), size=32)
    for argv in (["scripts/predict.py", "--checkpoint", finished_run / "checkpoint-best.pth",
                  "--input", frames / "run", "--out", a_file],
                 ["scripts/export_model.py", "--checkpoint", finished_run / "checkpoint-best.pth", "--out", a_file]):
        assert "is a file" in one_line_error(run_cli(argv))
    assert a_file.read_text() == "x"


FULL_DISK = """
import errno, runpy, sys, torch
real_save, calls, allowed = torch.save, [], int(sys.argv[1])
def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) > allowed:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(obj, f, *args, **kwargs)
torch.save = save
script = sys.argv[2]
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", ["finetune", "pretrain"])
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_earlier_checkpoint(tiny_split, tmp_path, script):
    import torch
    base = FINETUNE if script == "finetune" else PRETRAIN
    out = tmp_path / "run"
    proc = run_cli(["-c", FULL_DISK, "2", *base, "--data_path", tiny_split, "--epochs", "3", "--output_dir", out])
    line = one_line_error(proc)
    assert line.startswith(f"error: no space left on the disk writing {out}{os.sep}checkpoint-")
    assert "run the same command again" in line
    failed = Path(line.split(" writing ")[1].split(";")[0])
    kept = sorted(out.glob("checkpoint-*.pth"))
    assert len(kept) == 2 and failed not in kept and not list(out.glob(".*.tmp"))
    for path in kept:  # the checkpoints written before the disk filled up are complete
        assert "model" in torch.load(path, weights_only=False)


def test_read_only_output_parent_is_refused_even_as_root(tmp_path, monkeypatch):
    # root may write anywhere, so the permission is faked at the one call that decides it
    from rheed import runs
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(runs.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(UserError, match=r"--output_dir .*run is not writable \(.*locked does not allow writing\)"):
        runs.check_output_dir(locked / "run")
    assert list(locked.iterdir()) == []
    runs.check_output_dir(tmp_path / "free" / "run")  # a writable parent passes
