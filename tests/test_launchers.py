"""Launchers: the command each one prints must parse with its target's own argument parser."""
import re
import shlex
import sys

import pytest
import torch

from conftest import REPO, run_launcher

import main_finetune  # noqa: E402  (conftest puts the repo on sys.path)
import main_pretrain  # noqa: E402
from rheed.imageio import IMAGE_EXTENSIONS  # noqa: E402

OVERRIDES = {"GPUS": "2", "MODEL": "convnextv2_tiny", "DATA": "my_split", "OUTPUT": "outputs/x",
             "EPOCHS": "7", "BATCH": "8", "BLR": "3e-4", "INPUT_SIZE": "96", "EXTRA_ARGS": "--seed 5 --save_ckpt_num 2"}


def launch(script: str, env=None, args=(), cwd=REPO):
    return run_launcher(script, env=env, args=args, cwd=cwd)


def printed_command(stdout: str) -> list:
    lines = [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]
    assert len(lines) == 1, stdout
    return shlex.split(lines[0])


def parse_target(words: list, script: str):
    """Arguments after `script` in the printed command, parsed by that script's parser (exit 2 on unknown flags)."""
    parser = {"main_finetune.py": main_finetune, "main_pretrain.py": main_pretrain}[script].get_args_parser()
    return parser.parse_args(words[words.index(script) + 1:])


def test_finetune_gpu_defaults_parse_and_follow_the_recipe():
    proc = launch("run_finetune_balanced_gpu.sh", env={"DRY_RUN": "1"})
    assert proc.returncode == 0, proc.stderr
    words = printed_command(proc.stdout)
    assert words[:3] == ["torchrun", "--standalone", "--nproc_per_node=4"]
    args = parse_target(words, "main_finetune.py")
    assert args.model == "convnextv2_atto" and args.data_set == "RHEED" and args.data_path == "data_rheed_split"
    assert args.class_weights == "auto" and args.best_metric == "macro_f1"
    assert (args.blr, args.layer_decay, args.weight_decay, args.drop_path, args.smoothing) == (2e-4, 0.9, 0.3, 0.1, 0.2)
    assert (args.mixup, args.cutmix) == (0, 0)
    assert args.aug_mode == "rheed" and args.subtract_background and not args.train_stem_bias
    assert args.background_mode == "adaptive" and args.crop_scale == [0.5, 2.0]
    assert args.head_init_scale == 1.0
    assert args.model_ema and args.model_ema_eval and args.use_amp
    assert args.epochs == 100 and args.input_size == 224
    assert args.finetune == "weights/convnextv2_atto_1k_224_fcmae.pt"
    assert args.test_data_path is None  # RHEED: <data_path>/test is evaluated at the end
    # the default weights are not here: the dry run warns, naming the download script
    assert "scripts/download_weights.sh" in proc.stderr


def test_finetune_gpu_overrides(tmp_path):
    ckpt = tmp_path / "pre.pth"
    ckpt.write_bytes(b"x")
    proc = launch("run_finetune_balanced_gpu.sh", env={"DRY_RUN": "1", "FINETUNE": str(ckpt), **OVERRIDES})
    assert proc.returncode == 0 and proc.stderr == ""
    words = printed_command(proc.stdout)
    assert words[2] == "--nproc_per_node=2"
    args = parse_target(words, "main_finetune.py")
    assert (args.model, args.data_path, args.output_dir, args.epochs, args.batch_size, args.blr, args.input_size) \
        == ("convnextv2_tiny", "my_split", "outputs/x", 7, 8, 3e-4, 96)
    assert args.finetune == str(ckpt) and args.seed == 5 and args.save_ckpt_num == 2
    assert args.log_dir == "outputs/x/tensorboard"


def test_finetune_gpu_from_scratch_has_no_finetune_flag():
    proc = launch("run_finetune_balanced_gpu.sh", env={"DRY_RUN": "1", "FINETUNE": ""})
    words = printed_command(proc.stdout)
    assert "--finetune" not in words and parse_target(words, "main_finetune.py").finetune == ""


@pytest.mark.parametrize("script", ["run_finetune_balanced_gpu.sh", "run_finetune_cpu.sh"])
def test_missing_finetune_file_is_a_clear_error(script, tmp_path):
    proc = launch(script, env={"FINETUNE": str(tmp_path / "nope.pt"), "OUTPUT": str(tmp_path / "out")})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: FINETUNE=") and "bash scripts/download_weights.sh" in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "out").exists()


def test_pretrain_gpu_reads_train_and_unlabeled_only():
    proc = launch("run_pretrain_gpu.sh", env={"DRY_RUN": "1", **OVERRIDES, "UNLABELED": "/data/extra frames"})
    assert proc.returncode == 0, proc.stderr
    words = printed_command(proc.stdout)
    assert words[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    args = parse_target(words, "main_pretrain.py")
    assert (args.model, args.data_path, args.epochs, args.batch_size, args.blr, args.input_size) \
        == ("convnextv2_tiny", "my_split", 7, 8, 3e-4, 96)
    assert args.unlabeled_data_path == "/data/extra frames" and args.mask_ratio == 0.6
    assert not any("val" in w or "test" in w for w in words)


def test_pretrain_gpu_defaults_and_missing_data(tmp_path):
    proc = launch("run_pretrain_gpu.sh", env={"DRY_RUN": "1"})
    args = parse_target(printed_command(proc.stdout), "main_pretrain.py")
    assert (args.model, args.epochs, args.warmup_epochs, args.blr, args.unlabeled_data_path) \
        == ("convnextv2_atto", 400, 40, 1.5e-4, None)
    assert args.subtract_background and args.background_mode == "adaptive"
    proc = launch("run_pretrain_gpu.sh", env={"DATA": str(tmp_path)})
    assert proc.returncode == 1 and "train not found" in proc.stderr


def _touch_frames(folder, count, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i:03d}{suffix}").write_bytes(b"")


def test_pretrain_cpu_sets_epochs_for_about_1600_steps(tmp_path):
    """The CPU pre-training launcher turns the measured ~1600 optimisation steps into epochs for the frames it finds
    (train + unlabeled; val/test never), and runs the measured recipe of docs/EXPERIMENTS.md sections 38-49."""
    split, unlabeled = tmp_path / "split", tmp_path / "more frames"
    _touch_frames(split / "train" / "smooth", 70)
    _touch_frames(split / "train" / "rough", 30, ".TIF")
    _touch_frames(split / "val" / "smooth", 50)           # must not count
    _touch_frames(unlabeled / "run1", 60)
    (unlabeled / "notes.csv").write_text("not a frame")
    proc = launch("run_pretrain_cpu.sh", env={"DRY_RUN": "1", "PYTHON": "python3", "DATA": str(split),
                                              "UNLABELED": str(unlabeled)})
    assert proc.returncode == 0, proc.stderr
    assert "160 frames, 5 steps per epoch: 320 epochs" in proc.stdout
    assert "FINETUNE=outputs/pretrain_cpu/checkpoint-319.pth" in proc.stdout
    words = printed_command(proc.stdout)
    assert words[:2] == ["python3", "main_pretrain.py"]
    args = parse_target(words, "main_pretrain.py")
    assert (args.device, args.model, args.epochs, args.warmup_epochs, args.batch_size, args.lr, args.input_size) \
        == ("cpu", "convnextv2_atto", 320, 40, 32, 5e-4, 96)
    assert args.unlabeled_data_path == str(unlabeled) and args.norm_pix_loss
    assert args.mask_ratio == 0.4  # 0.6 and 0.75 fine-tuned worse on unseen runs (section 48)
    assert args.subtract_background and args.background_mode == "adaptive" and args.frame_cache
    assert args.pattern_gamma == 1.0  # FCMAE on squared frames fine-tuned worse (section 47)
    # the ~660 frames of sections 38-49 give 80 epochs with a 10-epoch warm-up (800 steps, 40 epochs, transferred worse)
    _touch_frames(unlabeled / "run2", 501)
    args = parse_target(printed_command(launch("run_pretrain_cpu.sh", env={
        "DRY_RUN": "1", "DATA": str(split), "UNLABELED": str(unlabeled)}).stdout), "main_pretrain.py")
    assert (args.epochs, args.warmup_epochs) == (80, 10)
    args = parse_target(printed_command(launch("run_pretrain_cpu.sh", env={
        "DRY_RUN": "1", "DATA": str(split), "EPOCHS": "3", "STEPS": "5", "MASK_RATIO": "0.6"}).stdout), "main_pretrain.py")
    assert (args.epochs, args.warmup_epochs, args.unlabeled_data_path, args.mask_ratio) == (3, 1, None, 0.6)


def test_pretrain_cpu_counts_the_loader_s_image_types():
    """The shell frame count must look for the same file types the pre-training loader reads."""
    text = (REPO / "scripts" / "run_pretrain_cpu.sh").read_text()
    assert sorted(re.findall(r"-iname '\*(\.\w+)'", text)) == sorted(IMAGE_EXTENSIONS)


def test_pretrain_cpu_bad_input_is_a_clear_error(tmp_path):
    out = tmp_path / "out"
    proc = launch("run_pretrain_cpu.sh", env={"DATA": str(tmp_path / "nowhere"), "OUTPUT": str(out)})
    assert proc.returncode == 1 and "train not found" in proc.stderr
    (tmp_path / "split" / "train").mkdir(parents=True)
    proc = launch("run_pretrain_cpu.sh", env={"DATA": str(tmp_path / "split"), "OUTPUT": str(out)})
    assert proc.returncode == 1 and "no image files" in proc.stderr
    proc = launch("run_pretrain_cpu.sh", env={"DATA": str(tmp_path / "split"), "OUTPUT": str(out),
                                              "UNLABELED": str(tmp_path / "gone")})
    assert proc.returncode == 1 and "UNLABELED" in proc.stderr and "not found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()  # one line, nothing created
    proc = launch("run_pretrain_cpu.sh", env={"DRY_RUN": "1", "DATA": str(tmp_path / "nowhere")})
    assert proc.returncode == 0 and "no frames found" in proc.stderr
    assert parse_target(printed_command(proc.stdout), "main_pretrain.py").epochs == 40


def test_finetune_cpu_command_parses():
    proc = launch("run_finetune_cpu.sh", env={"DRY_RUN": "1", **OVERRIDES, "PYTHON": "python3"})
    assert proc.returncode == 0, proc.stderr
    words = printed_command(proc.stdout)
    assert words[:2] == ["python3", "main_finetune.py"]
    args = parse_target(words, "main_finetune.py")
    assert args.device == "cpu" and args.use_amp is False and args.pin_mem is False
    assert (args.model, args.epochs, args.batch_size, args.input_size, args.finetune) \
        == ("convnextv2_tiny", 7, 8, 96, "")
    assert args.class_weights == "auto" and args.best_metric == "last"  # small validation sets: final epoch
    assert args.blr == 3e-4 and args.lr is None  # BLR set: upstream's batch-scaled lr


def test_finetune_cpu_defaults_are_the_small_data_recipe():
    proc = launch("run_finetune_cpu.sh", env={"DRY_RUN": "1", "PYTHON": "python3"})
    args = parse_target(printed_command(proc.stdout), "main_finetune.py")
    assert (args.lr, args.warmup_epochs, args.epochs, args.input_size, args.batch_size) == (2e-4, 1, 30, 128, 16)
    assert args.aug_mode == "rheed" and args.subtract_background and not args.train_stem_bias
    assert args.background_mode == "adaptive" and args.despeckle  # hot pixels filtered before the background
    assert args.pattern_gamma == 2.0  # from scratch the scaled pattern is squared (docs/EXPERIMENTS.md section 47)
    assert args.crop_scale == [0.5, 2.0]  # zoom in and out: the pattern's size on the screen is no cue
    assert (args.head_init_scale, args.weight_decay, args.drop_path, args.layer_decay, args.smoothing) \
        == (1.0, 0.05, 0.0, 1.0, 0.0)


@pytest.mark.parametrize("launcher", ["run_finetune_cpu.sh", "run_finetune_balanced_gpu.sh"])
def test_finetune_pattern_gamma_follows_the_start(launcher):
    """Squared pattern from scratch, the linear input of FCMAE pre-training from a checkpoint; PATTERN_GAMMA overrides."""
    def gamma(**env):
        proc = launch(launcher, env={"DRY_RUN": "1", "PYTHON": "python3", **env})
        return parse_target(printed_command(proc.stdout), "main_finetune.py").pattern_gamma
    assert gamma(FINETUNE="") == 2.0 and gamma(FINETUNE="weights/some_fcmae.pt") == 1.0
    assert gamma(FINETUNE="", PATTERN_GAMMA="1.5") == 1.5 and gamma(FINETUNE="w.pt", PATTERN_GAMMA="2") == 2.0


def test_finetune_cpu_uses_layer_decay_only_from_a_pretrained_start():
    """From a checkpoint the CPU launcher fine-tunes with upstream's atto layer decay (0.9); LAYER_DECAY overrides."""
    def layer_decay(**env):
        proc = launch("run_finetune_cpu.sh", env={"DRY_RUN": "1", "PYTHON": "python3", **env})
        return parse_target(printed_command(proc.stdout), "main_finetune.py").layer_decay
    assert layer_decay(FINETUNE="weights/some_fcmae.pt") == 0.9
    assert layer_decay(FINETUNE="weights/some_fcmae.pt", LAYER_DECAY="0.75") == 0.75
    assert layer_decay() == 1.0 and layer_decay(LAYER_DECAY="0.8") == 0.8


def test_download_weights_help_and_dry_run_need_no_network():
    proc = launch("download_weights.sh", args=["--help"])
    assert proc.returncode == 0 and "SIZE: atto femto pico nano tiny base large huge" in proc.stdout
    proc = launch("download_weights.sh", args=["--dry-run", "atto", "tiny"])
    assert proc.returncode == 0, proc.stderr
    base = "https://dl.fbaipublicfiles.com/convnext/convnextv2"
    for size in ("atto", "tiny"):
        assert f"{base}/pt_only/convnextv2_{size}_1k_224_fcmae.pt -> weights/convnextv2_{size}_1k_224_fcmae.pt" \
            in proc.stdout
        assert f"{base}/im1k/convnextv2_{size}_1k_224_ema.pt -> weights/convnextv2_{size}_1k_224_ema.pt" \
            in proc.stdout
    proc = launch("download_weights.sh", args=["giant"])
    assert proc.returncode == 1 and "unknown size 'giant'" in proc.stderr


def test_download_weights_verifies_files_already_present(tmp_path):
    """With both files in place nothing is downloaded; each must load into the classifier."""
    import timm_compat  # noqa: F401
    from models import convnextv2, fcmae

    torch.save({"model": fcmae.convnextv2_atto().state_dict()}, tmp_path / "convnextv2_atto_1k_224_fcmae.pt")
    torch.save({"model": convnextv2.convnextv2_atto(num_classes=1000).state_dict()},
               tmp_path / "convnextv2_atto_1k_224_ema.pt")
    env = {"WEIGHTS_DIR": str(tmp_path), "PYTHON": sys.executable}
    proc = launch("download_weights.sh", env=env, args=["atto"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("exists: ") == 2 and proc.stdout.count("OK ") == 2
    # a checkpoint of another size is rejected
    torch.save({"model": convnextv2.convnextv2_femto(num_classes=1000).state_dict()},
               tmp_path / "convnextv2_atto_1k_224_ema.pt")
    proc = launch("download_weights.sh", env=env, args=["atto"])
    assert proc.returncode == 1 and "error: " in proc.stderr and "does not fit the model" in proc.stderr
