"""Self-check of the software and hardware before a long run (scripts/check_env.py is its CLI).

Each check returns a one-line detail or raises CheckFailed with the one-line reason; run_checks prints
`PASS <name>: <detail>` / `FAIL <name>: <detail>` and returns the exit status. Nothing is downloaded.
"""
import importlib
import math
import os
import shutil
import socket
import sys
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path

from rheed.split_layout import SPLITS

# (module to import, pip package that provides it)
REQUIRED_MODULES = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("timm", "timm"),
    ("numpy", "numpy"),
    ("PIL", "pillow"),
    ("tensorboard", "tensorboard"),
    ("submitit", "submitit"),
    ("six", "six"),
    ("tifffile", "tifffile"),
    ("matplotlib", "matplotlib"),
    ("sklearn", "scikit-learn"),
    ("tqdm", "tqdm"),
    ("av", "av"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
    ("onnxscript", "onnxscript"),
)
TIMM_VERSION = "0.3.2"


class CheckFailed(Exception):
    """Raised inside a check with the one-line reason."""


def build_model(name: str, num_classes: int = 2):
    import timm_compat  # noqa: F401
    from models import convnextv2

    if name not in convnextv2.MODEL_NAMES:
        raise CheckFailed(f"unknown model {name!r}; valid: {', '.join(convnextv2.MODEL_NAMES)}")
    return convnextv2.__dict__[name](num_classes=num_classes)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def last_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def arch_supports(arch_list, major: int, minor: int) -> bool:
    """True when the build has kernels that run on compute capability major.minor.

    A cubin built for sm_XY runs on sm_XZ with Z >= Y (same major), e.g. the sm_86
    kernels of the CUDA 12.6 wheels run on an RTX 4090 (sm_89); PTX (compute_XY)
    is JIT-compiled for any newer capability.
    """
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def train_step(model, device, input_size: int, amp: bool):
    """One forward/backward pass; returns the loss. Raises CheckFailed on non-finite values."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(2, 3, input_size, input_size, device=device)
    y = torch.tensor([0, 1], device=device)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    scaler.scale(loss).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    loss = float(loss.detach())
    if not math.isfinite(loss) or not grads:
        raise CheckFailed(f"loss {loss} / {len(grads)} gradients")
    if not all(torch.isfinite(g).all() for g in grads):
        raise CheckFailed("non-finite gradients")
    return loss


def ddp_worker(rank, world_size, port, backend, model_name, input_size, result_file):
    """One rank of the DDP check: one SGD step, then the weights must agree across ranks."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    use_cuda = backend == "nccl"
    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=120))
    try:
        torch.manual_seed(0)
        model = build_model(model_name).to(device)
        ddp = DistributedDataParallel(model, device_ids=[rank] if use_cuda else None)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        torch.manual_seed(1 + rank)  # different data on every rank
        train_step(ddp, device, input_size, amp=use_cuda)
        optimizer.step()
        checksum = torch.cat([p.detach().double().flatten() for p in model.parameters()]).sum().reshape(1)
        gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
        dist.all_gather(gathered, checksum)
        if rank == 0:
            values = [float(v) for v in gathered]
            same = max(values) - min(values) <= 1e-6 * max(1.0, abs(values[0]))
            Path(result_file).write_text("ok" if same else f"weights differ across ranks: {values}")
        dist.barrier()  # no rank tears gloo down while another is still inside a collective
    finally:
        dist.destroy_process_group()


def spawn_ddp(world_size: int, backend: str, model_name: str, input_size: int) -> str:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        result_file = os.path.join(tmp, "result.txt")
        args = (world_size, free_port(), backend, model_name, input_size, result_file)
        try:
            mp.spawn(ddp_worker, args=args, nprocs=world_size, join=True)
        except Exception as exc:  # ProcessRaisedException carries the child's traceback
            return last_line(exc)
        return Path(result_file).read_text() if os.path.exists(result_file) else "rank 0 wrote no result"


def run_ddp(world_size: int, backend: str, model_name: str, input_size: int) -> str:
    result = spawn_ddp(world_size, backend, model_name, input_size)
    note = ""
    if result != "ok":
        # The rendezvous port is picked free, then bound by the workers: another program can take it in
        # between. Retry once on a new port; a real problem fails again.
        note, result = f" (second attempt; the first failed with: {result})", \
            spawn_ddp(world_size, backend, model_name, input_size)
    if result != "ok":
        raise CheckFailed(result + note)
    return f"{world_size} processes, backend {backend}, one step, weights identical on all ranks{note}"


# ---------------------------------------------------------------- checks

def check_versions(args):
    import timm_compat  # noqa: F401  (makes timm 0.3.2 importable on torch 2.x)
    import numpy
    import timm
    import torch
    import torchvision

    detail = (f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA build: "
              f"{torch.version.cuda or 'none'}), torchvision {torchvision.__version__}, "
              f"timm {timm.__version__}, numpy {numpy.__version__}")
    if timm.__version__ != TIMM_VERSION:
        raise CheckFailed(f"timm {timm.__version__} installed, the project needs timm=={TIMM_VERSION}; {detail}")
    return detail


def check_imports(args):
    modules = list(REQUIRED_MODULES) + [(name, name) for name in args.require]
    missing = []
    for module, package in modules:
        try:
            if module == "timm":
                importlib.import_module("timm_compat")
            importlib.import_module(module)
        except Exception as exc:
            missing.append(f"{module} ({package}: {last_line(exc)})")
    if missing:
        raise CheckFailed(f"cannot import {'; '.join(missing)} -- install env/requirements.txt "
                          f"(pip) or env/environment.yml (conda)")
    return f"{len(modules)} modules importable"


def check_model_cpu(args):
    import torch

    model = build_model(args.model)
    loss = train_step(model, torch.device("cpu"), args.input_size, amp=False)
    return f"{args.model} forward/backward on CPU at {args.input_size}px, loss {loss:.3f}"


def check_ddp_cpu(args):
    return run_ddp(2, "gloo", args.model, args.input_size)


def check_disk(args):
    path = Path(args.output_dir).resolve()
    while not path.exists():
        path = path.parent
    free_gb = shutil.disk_usage(path).free / 1024 ** 3
    detail = f"{free_gb:.1f} GB free at {path} (need {args.min_free_gb:g} GB)"
    if free_gb < args.min_free_gb:
        raise CheckFailed(detail)
    return detail


def check_data(args):
    from rheed.imageio import list_images, verify_files

    root = Path(args.data_path)
    if not root.is_dir():
        raise CheckFailed(f"{root} is not a directory")
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise CheckFailed(f"{root} lacks {', '.join(missing)}/ (expected {root}/{{train,val,test}}/<class>/; "
                          f"make it with scripts/split_dataset_simple.py)")
    classes, counts, paths = {}, [], []
    for split in SPLITS:
        classes[split] = sorted(d.name for d in (root / split).iterdir() if d.is_dir())
        files = list_images(str(root / split))
        counts.append(f"{split} {len(files)}")
        paths += files
        if len(classes[split]) < 2 or not files:
            raise CheckFailed(f"{root / split} needs at least 2 class folders with images "
                              f"(found classes {classes[split]}, {len(files)} images)")
    if len({tuple(c) for c in classes.values()}) != 1:
        raise CheckFailed(f"class folders differ between splits: {classes}")
    _, bad = verify_files(paths, skip_corrupt=True)
    if bad:
        shown = "; ".join(f"{p} ({reason})" for p, reason in bad[:3])
        raise CheckFailed(f"{len(bad)} unreadable image(s), e.g. {shown}")
    return f"classes {classes['train']}; images {', '.join(counts)}; all readable"


def check_cuda(args):
    import torch

    if torch.version.cuda is None:
        raise CheckFailed(f"torch {torch.__version__} is a CPU-only build; recreate the env with "
                          f"scripts/create_env.sh")
    if not torch.cuda.is_available():
        raise CheckFailed(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU "
                          f"(driver too old for this CUDA version, or CUDA_VISIBLE_DEVICES empty)")
    return f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"


def check_gpu_count(args):
    import torch

    count = torch.cuda.device_count()
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
    if count == 0 or (args.gpus and count != args.gpus):
        raise CheckFailed(f"{count} GPU(s) visible, expected {args.gpus or 'at least 1'}")
    return f"{count} GPU(s): {names}"


def check_capability(args):
    import torch

    arch_list = torch.cuda.get_arch_list()
    caps = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    bad = [f"GPU {i} sm_{ma}{mi}" for i, (ma, mi) in enumerate(caps) if not arch_supports(arch_list, ma, mi)]
    if bad:
        raise CheckFailed(f"{', '.join(bad)} not covered by this build's {arch_list}")
    return f"capabilities {sorted({f'sm_{ma}{mi}' for ma, mi in caps})} covered by {arch_list}"


def check_nccl(args):
    import torch
    import torch.distributed as dist

    if not dist.is_nccl_available():
        raise CheckFailed("this torch build has no NCCL backend")
    version = torch.cuda.nccl.version()
    return f"NCCL {'.'.join(map(str, version)) if isinstance(version, tuple) else version}"


def check_model_gpus(args):
    import torch

    losses = []
    for i in range(torch.cuda.device_count()):
        device = torch.device("cuda", i)
        model = build_model(args.model).to(device)
        losses.append(f"cuda:{i} {train_step(model, device, args.input_size, amp=True):.3f}")
        del model
        torch.cuda.empty_cache()
    return f"{args.model} forward/backward with AMP float16: loss {', '.join(losses)}"


def check_ddp_gpus(args):
    import torch

    return run_ddp(torch.cuda.device_count(), "nccl", args.model, args.input_size)


def run_checks(args) -> int:
    checks = [("versions", check_versions), ("imports", check_imports)]
    if not args.cpu:
        checks += [("cuda", check_cuda), ("gpu_count", check_gpu_count), ("capability", check_capability),
                   ("nccl", check_nccl), ("model_gpu", check_model_gpus), ("ddp_nccl", check_ddp_gpus)]
    checks += [("model_cpu", check_model_cpu), ("ddp_gloo", check_ddp_cpu), ("disk", check_disk)]
    if args.data_path:
        checks.append(("data", check_data))
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {name for name, _ in checks})
        if unknown:
            print(f"error: unknown check(s) {unknown} for this mode; choose from "
                  f"{[name for name, _ in checks]}", file=sys.stderr)
            return 2
        checks = [(name, check) for name, check in checks if name in wanted]

    failed = 0
    gpu_ok = True
    for name, check in checks:
        if name in ("gpu_count", "capability", "nccl", "model_gpu", "ddp_nccl") and not gpu_ok:
            print(f"FAIL {name}: skipped because CUDA is unusable", flush=True)
            failed += 1
            continue
        try:
            detail = check(args)
            print(f"PASS {name}: {detail}", flush=True)
        except CheckFailed as exc:
            print(f"FAIL {name}: {exc}", flush=True)
            failed += 1
            gpu_ok = gpu_ok and name != "cuda"
        except Exception as exc:  # an unexpected crash is a failed check, with its cause
            print(f"FAIL {name}: {last_line(exc)}", flush=True)
            if os.environ.get("CHECK_ENV_TRACEBACK"):
                traceback.print_exc()
            failed += 1
            gpu_ok = gpu_ok and name != "cuda"
    total = len(checks)
    if failed:
        print(f"check_env: {failed} of {total} checks FAILED", flush=True)
        return 1
    print(f"check_env: all {total} checks PASS", flush=True)
    return 0
