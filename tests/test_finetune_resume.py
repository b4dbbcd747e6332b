"""Kill / resume behaviour of main_finetune.py: atomic checkpoints, auto-resume, truncated files."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, run_cli


def command(data, out, epochs=3):
    return ["main_finetune.py", "--model", "convnextv2_atto", "--data_set", "RHEED", "--data_path", data,
            "--input_size", "32", "--batch_size", "4", "--epochs", epochs, "--warmup_epochs", "1",
            "--device", "cpu", "--num_workers", "0", "--output_dir", out, "--save_ckpt_num", "5"]


def logged_epochs(out):
    return [json.loads(ln)["epoch"] for ln in (out / "log.txt").read_text().splitlines()]


def test_kill_and_resume_then_skip_truncated_checkpoint(tiny_split, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, *map(str, command(tiny_split, out))], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoint-0.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
    assert not (out / "checkpoint-2.pth").exists()  # killed before the end
    newest = max(int(p.stem.split("-")[1]) for p in out.glob("checkpoint-[0-9]*.pth"))

    rerun = run_cli(command(tiny_split, out), check=True)
    assert f"Resuming at epoch {newest + 1}" in rerun.stdout
    assert logged_epochs(out) == [0, 1, 2]
    assert torch.load(out / "checkpoint-2.pth", weights_only=True)["epoch"] == 2
    assert (out / "test_metrics.json").is_file()

    # A truncated newest checkpoint is skipped; the run resumes from the one before it.
    data = (out / "checkpoint-2.pth").read_bytes()
    (out / "checkpoint-2.pth").write_bytes(data[: len(data) // 2])
    rerun = run_cli(command(tiny_split, out), check=True)
    assert "skipping unreadable checkpoint" in rerun.stdout + rerun.stderr
    assert "Resuming at epoch 2" in rerun.stdout
    assert logged_epochs(out) == [0, 1, 2]
    assert torch.load(out / "checkpoint-2.pth", weights_only=True)["epoch"] == 2

    # A fresh start (no auto-resume) into a finished run is refused before anything is touched.
    from main_finetune import get_args_parser, main
    from rheed.errors import UserError

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    args = get_args_parser().parse_args([str(a) for a in command(tiny_split, out)[1:]] + ["--auto_resume", "false"])
    with pytest.raises(UserError, match="did not resume"):
        main(args)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
