"""scripts/pretrain_synthetic.sh: synthetic corpus -> split by run -> supervised or FCMAE pre-training."""
import shlex
import sys

import pytest
import torch

from conftest import run_launcher

import main_finetune  # noqa: E402
import main_pretrain  # noqa: E402
from models.utils import load_pretrained_weights  # noqa: E402


def plus_lines(stdout: str) -> list:
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def after(words: list, script: str) -> list:
    return words[words.index(script) + 1:]


def flag(words: list, name: str) -> str:
    return words[words.index(name) + 1]


def test_cpu_supervised_dry_run_prints_corpus_split_and_training(tmp_path):
    proc = run_launcher("pretrain_synthetic.sh", env={"DRY_RUN": "1", "OUT": str(tmp_path / "syn"),
                                                      "MODE": "supervised"})
    assert proc.returncode == 0, proc.stderr
    generate, split, train = plus_lines(proc.stdout)
    gen = after(generate, "scripts/make_synthetic_rheed.py")
    assert {"--variety", "--camera_randomize"} <= set(gen)
    assert (flag(gen, "--seed"), flag(gen, "--sequences"), flag(gen, "--scale")) == ("1000", "33", "0.5063")
    assert flag(gen, "--out") == str(tmp_path / "syn" / "corpus")
    cut = after(split, "scripts/split_dataset_simple.py")
    assert flag(cut, "--classes") == "fine" and "--by_sequence" in cut
    assert cut[cut.index("--ratios") + 1:cut.index("--ratios") + 4] == ["0.85", "0.15", "0"]
    args = main_finetune.get_args_parser().parse_args(after(train, "main_finetune.py"))
    assert args.data_path == str(tmp_path / "syn" / "corpus_split") and args.finetune == ""
    assert args.output_dir == str(tmp_path / "syn" / "supervised")
    assert (args.epochs, args.input_size, args.device, args.aug_mode) == (10, 128, "cpu", "rheed")
    assert not (tmp_path / "syn").exists()  # a dry run writes nothing


def test_cpu_default_is_fcmae_at_the_measured_lr(tmp_path):
    proc = run_launcher("pretrain_synthetic.sh", env={"DRY_RUN": "1", "OUT": str(tmp_path / "syn")})
    assert proc.returncode == 0, proc.stderr
    train = plus_lines(proc.stdout)[-1]
    args = main_pretrain.get_args_parser().parse_args(after(train, "main_pretrain.py"))
    assert (args.lr, args.batch_size, args.epochs, args.background_mode) == (5e-4, 32, 20, "adaptive")
    assert args.output_dir == str(tmp_path / "syn" / "fcmae")
    assert not (tmp_path / "syn").exists()


def test_gpu_fcmae_dry_run_uses_the_pretrain_launcher(tmp_path):
    proc = run_launcher("pretrain_synthetic.sh", env={"DRY_RUN": "1", "OUT": str(tmp_path / "syn"),
                                                       "DEVICE": "gpu", "MODE": "fcmae", "FRAMES": "20000"})
    assert proc.returncode == 0, proc.stderr
    generate, _, train = plus_lines(proc.stdout)
    assert flag(generate, "--sequences") == "333" and flag(generate, "--scale") == "5.0633"
    assert train[:3] == ["torchrun", "--standalone", "--nproc_per_node=4"]
    args = main_pretrain.get_args_parser().parse_args(after(train, "main_pretrain.py"))
    assert args.data_path == str(tmp_path / "syn" / "corpus_split") and args.output_dir == str(tmp_path / "syn" / "fcmae")
    assert (args.epochs, args.input_size, args.subtract_background) == (400, 224, True)


@pytest.mark.parametrize("env, message", [({"DEVICE": "tpu"}, "DEVICE must be cpu or gpu"),
                                          ({"MODE": "simclr"}, "MODE must be supervised or fcmae"),
                                          ({"FRAMES": "50"}, "FRAMES must be a whole number >= 200")])
def test_bad_settings_are_one_line_errors(tmp_path, env, message):
    proc = run_launcher("pretrain_synthetic.sh", env={"OUT": str(tmp_path / "syn"), **env})
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {message}, got '{list(env.values())[0]}'"
    assert not (tmp_path / "syn").exists()


def test_tiny_supervised_corpus_gives_a_checkpoint_that_fine_tuning_accepts(tmp_path):
    out = tmp_path / "syn"
    env = {"OUT": str(out), "MODE": "supervised", "FRAMES": "200", "EPOCHS": "1", "INPUT_SIZE": "32", "WORKERS": "2",
           "EXTRA_ARGS": "--min_epoch_size 0 --batch_size 32",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = run_launcher("pretrain_synthetic.sh", env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ckpt = out / "supervised" / "checkpoint-best.pth"
    assert f"synthetic pre-training checkpoint: {ckpt}" in proc.stdout
    assert sorted(p.name for p in (out / "corpus_split").iterdir()) == [
        "manifest.csv", "split_report.json", "split_report.txt", "train", "val"]
    fine_classes = sorted(p.name for p in (out / "corpus_split" / "train").iterdir())
    assert fine_classes == sorted(p.name for p in (out / "corpus_split" / "val").iterdir())
    assert {"layer_smooth", "island_rough", "laue_smooth", "ring_rough", "amorphous_halo"} <= set(fine_classes)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert state["head.weight"].shape == (len(fine_classes), 320)  # atto, one output per fine class

    model = main_finetune.convnextv2.convnextv2_atto(num_classes=2)
    report = load_pretrained_weights(model, torch.load(ckpt, map_location="cpu", weights_only=False))
    assert report["mismatched"] == ["head.weight", "head.bias"] and report["missing"] == ["head.weight", "head.bias"]
    assert torch.equal(model.downsample_layers[0][0].weight, state["downsample_layers.0.0.weight"])
