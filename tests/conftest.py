import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_pattern_image(path: Path, kind: str, size: int, rng: np.random.Generator) -> None:
    """Writes a grayscale frame: vertical streaks for 'smooth', a spot grid for 'rough'."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(size / 8, size / 5)
    phase = rng.uniform(0, period)
    if kind == "smooth":
        img = np.exp(-(((xx - phase) % period - period / 2) ** 2) / 4.0)
    else:
        dx = ((xx - phase) % period - period / 2) ** 2
        dy = ((yy - phase) % period - period / 2) ** 2
        img = np.exp(-(dx + dy) / 6.0)
    img = img * rng.uniform(150, 230) + rng.normal(0, 8, img.shape) + 20
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").save(path)


def make_image_folder(root: Path, classes=("rough", "smooth"), n_per_class=(8, 12), size=64, seed=0) -> Path:
    """ImageFolder layout root/<class>/<class>_NNN.png with learnable streak/spot patterns."""
    rng = np.random.default_rng(seed)
    for cls, n in zip(classes, n_per_class):
        (root / cls).mkdir(parents=True, exist_ok=True)
        kind = "rough" if cls == "rough" else "smooth"
        for i in range(n):
            write_pattern_image(root / cls / f"{cls}_{i:03d}.png", kind, size, rng)
    return root


@pytest.fixture(scope="session")
def tiny_split(tmp_path_factory) -> Path:
    """A 2-class split root with train/val/test ImageFolders of 64 px frames."""
    root = tmp_path_factory.mktemp("tiny_split")
    make_image_folder(root / "train", n_per_class=(8, 16), seed=0)
    make_image_folder(root / "val", n_per_class=(4, 6), seed=1)
    make_image_folder(root / "test", n_per_class=(4, 6), seed=2)
    return root


LAUNCHER_VARIABLES = ("GPUS", "MODEL", "DATA", "OUTPUT", "FINETUNE", "EPOCHS", "BATCH", "LR", "BLR", "INPUT_SIZE",
                      "NB_CLASSES", "NUM_WORKERS", "WARMUP_EPOCHS", "MIN_EPOCH_SIZE", "LAYER_DECAY", "UNLABELED", "EXTRA_ARGS",
                      "DRY_RUN", "DEVICE", "MODE", "FRAMES", "SEED", "OUT", "WORKERS", "STEPS")


def run_launcher(script: str, env=None, args=(), cwd=REPO, timeout=120) -> subprocess.CompletedProcess:
    """Runs `bash scripts/<script>` with only the given launcher variables set (none leak in from the shell)."""
    full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    full_env.update(env or {})
    return subprocess.run(["bash", str(REPO / "scripts" / script), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_cli(args, cwd=REPO, timeout=600, env=None, check=False) -> subprocess.CompletedProcess:
    """Runs `python <args>` from the repo root and returns the completed process (text output)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=full_env, timeout=timeout,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(autouse=True)
def one_thread():
    """In-process torch work runs single-threaded, like run_cli's OMP_NUM_THREADS=1: the tensors are tiny,
    and extra intra-op threads stall badly when the 2 CI cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_script(name: str):
    """scripts/<name>.py as a module, so tests call its main() in-process (no new torch import)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script_main(name: str, argv) -> None:
    """Calls scripts/<name>.py's main() with argv (sys.exit(message) on errors, as from the shell)."""
    load_script(name).main([str(a) for a in argv])


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial values for every parameter (GRN and LayerNorm are identity-like at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() == 1 and name.endswith("weight"):  # LayerNorm scales
                p.copy_(1 + 0.2 * noise)
            elif ".grn." in name:
                p.copy_(0.3 * noise)
            else:
                p.copy_(0.05 * noise)


def save_random_classifier(path: Path) -> Path:
    """A randomised convnextv2_atto checkpoint (classes rough/smooth, 32 px) as fine-tuning writes them."""
    from models import convnextv2
    model = convnextv2.convnextv2_atto(num_classes=2)
    randomize_(model)
    torch.save({"model": model.state_dict(), "epoch": 1, "class_names": ["rough", "smooth"],
                "args": {"model": "convnextv2_atto", "input_size": 32, "nb_classes": 2, "data_set": "RHEED"}}, path)
    return path
