"""Training utilities shared by pre-training and fine-tuning.

Logging (SmoothedValue, MetricLogger, TensorboardLogger), distributed setup, mixed precision
(NativeScalerWithGradNormCount, amp_autocast), checkpoints (save_model, load_checkpoint,
auto_load_model) and the learning-rate schedule. Names and signatures follow upstream ConvNeXt-V2;
the differences are listed in docs/UPSTREAM_DIFF.md.
"""
import argparse
import builtins
import datetime
import json
import math
import os
import random
import re
import time
import warnings
from collections import defaultdict, deque
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from models.utils import remap_checkpoint_keys  # noqa: F401  (upstream exposes it from utils)
from rheed.atomic import atomic_write, write_text_atomic
from rheed.errors import UserError


def str2bool(v):
    """argparse type for boolean flags given as a value: `--eval true`, `--model_ema 0`."""
    if isinstance(v, bool):
        return v
    value = str(v).strip().lower()
    if value in ('yes', 'true', 't', 'y', '1'):
        return True
    if value in ('no', 'false', 'f', 'n', '0'):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected (true/false, yes/no, 1/0), got {v!r}")


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------

def is_dist_avail_and_initialized():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank():
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def is_main_process():
    return get_rank() == 0


def on_main_process(fn, *args, **kwargs):
    """fn(*args, **kwargs) computed once on rank 0 and broadcast to every process (just called when not
    distributed). A UserError raised on rank 0 is raised on every rank."""
    if not (is_dist_avail_and_initialized() and get_world_size() > 1):
        return fn(*args, **kwargs)
    result = [None, None]  # (value, error message)
    if get_rank() == 0:
        try:
            result[0] = fn(*args, **kwargs)
        except UserError as e:
            result[1] = str(e)
    dist.broadcast_object_list(result, src=0)
    if result[1] is not None:
        raise UserError(result[1])
    return result[0]


def _dist_device():
    """Device that collective tensors must live on: CUDA for nccl, CPU for gloo."""
    if dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def setup_for_distributed(is_master):
    """Silences print() on non-master ranks; print(..., force=True) still prints everywhere."""
    builtin_print = builtins.print

    def print(*args, **kwargs):
        force = kwargs.pop('force', False)
        if is_master or force:
            builtin_print(*args, **kwargs)

    builtins.print = print


def _uses_cuda(args):
    return torch.device(args.device).type == 'cuda'


def init_distributed_mode(args):
    """Sets args.rank/world_size/gpu/distributed from the launcher's environment and joins the group.

    Modes, checked in this order: ITP/OpenMPI (--dist_on_itp), torchrun/env:// (RANK, WORLD_SIZE),
    SLURM (SLURM_PROCID). Backend nccl when --device is cuda, gloo otherwise; on CPU no CUDA call is made.
    """
    use_cuda = _uses_cuda(args)
    if args.dist_on_itp:
        args.rank = int(os.environ['OMPI_COMM_WORLD_RANK'])
        args.world_size = int(os.environ['OMPI_COMM_WORLD_SIZE'])
        args.gpu = int(os.environ['OMPI_COMM_WORLD_LOCAL_RANK'])
        args.dist_url = f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        os.environ['LOCAL_RANK'] = str(args.gpu)
        os.environ['RANK'] = str(args.rank)
        os.environ['WORLD_SIZE'] = str(args.world_size)
    elif 'RANK' in os.environ and 'WORLD_SIZE' in os.environ:
        args.rank = int(os.environ['RANK'])
        args.world_size = int(os.environ['WORLD_SIZE'])
        args.gpu = int(os.environ.get('LOCAL_RANK', 0))
    elif 'SLURM_PROCID' in os.environ:
        args.rank = int(os.environ['SLURM_PROCID'])
        if use_cuda:
            num_gpus = torch.cuda.device_count()
            if num_gpus == 0:
                raise UserError("SLURM job with --device cuda, but no GPU is visible to this task")
            args.gpu = args.rank % num_gpus
        else:
            args.gpu = int(os.environ.get('SLURM_LOCALID', 0))
        os.environ['RANK'] = str(args.rank)
        os.environ['LOCAL_RANK'] = str(args.gpu)
        os.environ['WORLD_SIZE'] = str(args.world_size)
    else:
        print('Not using distributed mode')
        args.distributed = False
        return

    args.distributed = True
    if use_cuda:
        torch.cuda.set_device(args.gpu)
        args.dist_backend = 'nccl'
    else:
        args.dist_backend = 'gloo'
    print(f'| distributed init (rank {args.rank}, backend {args.dist_backend}): {args.dist_url}, '
          f'gpu {args.gpu if use_cuda else None}', flush=True)
    dist.init_process_group(backend=args.dist_backend, init_method=args.dist_url,
                            world_size=args.world_size, rank=args.rank)
    if use_cuda:
        dist.barrier(device_ids=[args.gpu])
    else:
        dist.barrier()
    setup_for_distributed(args.rank == 0)


def all_reduce_mean(x):
    """Mean of a Python number over all processes (the number itself when not distributed)."""
    world_size = get_world_size()
    if world_size > 1:
        t = torch.tensor(x, dtype=torch.float64, device=_dist_device())
        dist.all_reduce(t)
        return (t / world_size).item()
    return x


def build_train_sampler(dataset, args):
    """Shuffling sampler for training, used in every mode (one replica when not distributed).

    Call `sampler.set_epoch(epoch)` at the start of EVERY epoch, distributed or not, so that each
    epoch sees a new order (upstream only did it when distributed).
    """
    return torch.utils.data.DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(),
                                               shuffle=True, seed=args.seed)


# ---------------------------------------------------------------------------------------------
# Metric logging
# ---------------------------------------------------------------------------------------------

class SmoothedValue:
    """Tracks a series of values: windowed median/average and a global average."""

    def __init__(self, window_size=20, fmt=None):
        self.deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt or "{median:.4f} ({global_avg:.4f})"

    def update(self, value, n=1):
        self.deque.append(value)
        self.count += n
        self.total += value * n

    def synchronize_between_processes(self):
        """All-reduces count and total (not the window)."""
        if not is_dist_avail_and_initialized():
            return
        t = torch.tensor([self.count, self.total], dtype=torch.float64, device=_dist_device())
        dist.barrier()
        dist.all_reduce(t)
        t = t.tolist()
        self.count = int(t[0])
        self.total = t[1]

    @property
    def median(self):
        return torch.tensor(list(self.deque)).median().item()

    @property
    def avg(self):
        return torch.tensor(list(self.deque), dtype=torch.float32).mean().item()

    @property
    def global_avg(self):
        return self.total / max(self.count, 1)

    @property
    def max(self):
        return max(self.deque)

    @property
    def value(self):
        return self.deque[-1]

    def __str__(self):
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg,
                               max=self.max, value=self.value)


class MetricLogger:
    def __init__(self, delimiter="\t"):
        self.meters = defaultdict(SmoothedValue)
        self.delimiter = delimiter

    def update(self, **kwargs):
        for k, v in kwargs.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                v = v.item()
            assert isinstance(v, (float, int)), f"meter {k}: expected a number, got {type(v).__name__}"
            self.meters[k].update(v)

    def __getattr__(self, attr):
        if attr in self.__dict__.get('meters', {}):
            return self.meters[attr]
        if attr in self.__dict__:
            return self.__dict__[attr]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{attr}'")

    def __str__(self):
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def synchronize_between_processes(self):
        for meter in self.meters.values():
            meter.synchronize_between_processes()

    def add_meter(self, name, meter):
        self.meters[name] = meter

    def log_every(self, iterable, print_freq, header=None):
        header = header or ''
        start_time = time.time()
        end = time.time()
        iter_time = SmoothedValue(fmt='{avg:.4f}')
        data_time = SmoothedValue(fmt='{avg:.4f}')
        n = len(iterable)
        space_fmt = ':' + str(len(str(n))) + 'd'
        parts = [header, '[{0' + space_fmt + '}/{1}]', 'eta: {eta}', '{meters}', 'time: {time}', 'data: {data}']
        # Report GPU memory only if this process has actually used CUDA (never initialise it here).
        show_memory = torch.cuda.is_initialized()
        if show_memory:
            parts.append('max mem: {memory:.0f}')
        log_msg = self.delimiter.join(parts)
        mb = 1024.0 * 1024.0
        for i, obj in enumerate(iterable):
            data_time.update(time.time() - end)
            yield obj
            iter_time.update(time.time() - end)
            if i % print_freq == 0 or i == n - 1:
                eta_seconds = iter_time.global_avg * (n - i)
                eta_string = str(datetime.timedelta(seconds=int(eta_seconds)))
                fields = dict(eta=eta_string, meters=str(self), time=str(iter_time), data=str(data_time))
                if show_memory:
                    fields['memory'] = torch.cuda.max_memory_allocated() / mb
                print(log_msg.format(i, n, **fields), flush=True)
            end = time.time()
        total_time = time.time() - start_time
        total_time_str = str(datetime.timedelta(seconds=int(total_time)))
        print(f'{header} Total time: {total_time_str} ({total_time / max(n, 1):.4f} s / it)', flush=True)


class TensorboardLogger:
    """Scalars to TensorBoard under tags `<head>/<name>`."""

    def __init__(self, log_dir):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=log_dir)
        self.step = 0

    def set_step(self, step=None):
        if step is not None:
            self.step = step
        else:
            self.step += 1

    def update(self, head='scalar', step=None, **kwargs):
        for k, v in kwargs.items():
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                v = v.item()
            assert isinstance(v, (float, int)), f"tensorboard value {k}: expected a number"
            self.writer.add_scalar(f'{head}/{k}', v, self.step if step is None else step)

    def flush(self):
        self.writer.flush()


# ---------------------------------------------------------------------------------------------
# Lenient state-dict loading (used by --finetune)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Mixed precision and the gradient step
# ---------------------------------------------------------------------------------------------

def get_amp_dtype(name):
    """'float16' | 'bfloat16' (or a torch.dtype) -> torch.dtype."""
    if isinstance(name, torch.dtype):
        return name
    dtypes = {'float16': torch.float16, 'fp16': torch.float16, 'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}
    if name not in dtypes:
        raise UserError(f"unknown --amp_dtype {name!r}; use float16 or bfloat16")
    return dtypes[name]


def amp_autocast(device, enabled=True, dtype=torch.bfloat16):
    """Autocast context for CUDA; a no-op on CPU or when disabled."""
    device_type = torch.device(device).type
    if not enabled or device_type != 'cuda':
        return nullcontext()
    return torch.autocast(device_type='cuda', dtype=get_amp_dtype(dtype))


def get_grad_norm_(parameters, norm_type: float = 2.0) -> torch.Tensor:
    """Total gradient norm over all parameters that have a gradient (0. when none has)."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return torch.tensor(0.)
    device = grads[0].device
    if norm_type == math.inf:
        return max(g.detach().abs().max().to(device) for g in grads)
    return torch.norm(torch.stack([torch.norm(g.detach(), norm_type).to(device) for g in grads]), norm_type)


class NativeScalerWithGradNormCount:
    """Backward + (unscale, clip or measure grad norm, step) with an optional GradScaler.

    Loss scaling is only active for CUDA (it is meant for float16 autocast; callers pass
    `enabled=use_amp and amp_dtype == float16`). Clipping works whether scaling is on or off, so the
    same call serves the AMP and the float32 paths. Returns the pre-clip total grad norm on update
    steps, None otherwise.
    """
    state_dict_key = "amp_scaler"

    def __init__(self, device_type='cuda', enabled=True):
        self.enabled = bool(enabled) and device_type == 'cuda'
        self._scaler = torch.amp.GradScaler('cuda', enabled=self.enabled)

    def __call__(self, loss, optimizer, clip_grad=None, parameters=None, create_graph=False, update_grad=True):
        self._scaler.scale(loss).backward(create_graph=create_graph)
        if not update_grad:
            return None
        if parameters is None:
            parameters = [p for group in optimizer.param_groups for p in group['params']]
        parameters = list(parameters)
        self._scaler.unscale_(optimizer)
        if clip_grad is not None:
            norm = torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
        else:
            norm = get_grad_norm_(parameters)
        self._scaler.step(optimizer)
        self._scaler.update()
        return norm

    def state_dict(self):
        return self._scaler.state_dict()

    def load_state_dict(self, state_dict):
        # A disabled scaler saves {}; loading that into an enabled one would raise, so keep defaults.
        if not state_dict:
            return
        self._scaler.load_state_dict(state_dict)


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

def _plain(value):
    """Converts a value to types that torch.load(weights_only=True) accepts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def args_to_dict(args):
    """argparse.Namespace (or dict) -> dict of plain Python values."""
    items = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return {k: _plain(v) for k, v in items.items()}


def checkpoint_args(ckpt):
    """The run arguments stored in a checkpoint as a dict (ours: dict; upstream: Namespace)."""
    args = ckpt.get('args') if isinstance(ckpt, dict) else None
    if args is None:
        return {}
    if isinstance(args, argparse.Namespace):
        return vars(args).copy()
    return dict(args)


def atomic_save(obj, path):
    """torch.save that never leaves a truncated checkpoint (see rheed.atomic)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def trim_log(path, start_epoch: int) -> None:
    """Drops log.txt lines of epochs >= start_epoch, which a resumed run trains (and logs) again."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            if json.loads(line).get('epoch', -1) < start_epoch:
                kept.append(line + '\n')
        except ValueError:
            continue
    write_text_atomic(path, ''.join(kept))


def _unwrap_ema(model_ema):
    model = getattr(model_ema, 'ema', model_ema)
    return getattr(model, 'module', model)


def get_rng_state():
    """RNG states of this process as weights_only-loadable values."""
    np_state = np.random.get_state()
    return {
        'torch': torch.get_rng_state(),
        'numpy': [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        'python': random.getstate(),
    }


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))


def save_model(args, epoch, model, model_without_ddp, optimizer, loss_scaler, model_ema=None, extra=None):
    """Writes <output_dir>/checkpoint-<epoch>.pth on the main process (atomically) and rotates old ones.

    Keys: model, optimizer, epoch, scaler, args (plain dict), rng_state, model_ema (when EMA is on),
    plus the entries of `extra` (e.g. class_names, best metric). Returns the path.
    """
    output_dir = Path(args.output_dir)
    checkpoint_path = output_dir / f'checkpoint-{epoch}.pth'
    if not is_main_process():
        return checkpoint_path
    to_save = {
        'model': model_without_ddp.state_dict(),
        'optimizer': optimizer.state_dict(),
        'epoch': epoch,
        'scaler': loss_scaler.state_dict(),
        'args': args_to_dict(args),
        'rng_state': get_rng_state(),
    }
    if model_ema is not None:
        to_save['model_ema'] = _unwrap_ema(model_ema).state_dict()
    if extra:
        to_save.update(extra)
    atomic_save(to_save, checkpoint_path)

    if isinstance(epoch, int):
        old = output_dir / f'checkpoint-{epoch - args.save_ckpt_num * args.save_ckpt_freq}.pth'
        if old.exists():
            old.unlink()
    return checkpoint_path


_WEIGHTS_ONLY_HINT = 'Weights only load failed'


def load_checkpoint(path):
    """torch.load(map_location='cpu', weights_only=True), allowing argparse.Namespace (upstream `args`).

    URLs are not downloaded (offline project). Unreadable files raise UserError naming the file.
    """
    path = str(path)
    if re.match(r'^[a-z]+://', path):
        raise UserError(f"{path} is a URL; this project does not download weights. Download the file on a "
                        f"machine with internet access, copy it here and pass its local path")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if _WEIGHTS_ONLY_HINT in str(e):
            globals_found = re.findall(r'GLOBAL (\S+)', str(e))
            what = globals_found[0] if globals_found else 'arbitrary Python objects'
            raise UserError(f"checkpoint {path} contains {what}, which is not loaded for safety "
                            f"(only tensors and plain values are accepted)") from None
        raise UserError(f"cannot read checkpoint {path}: the file is truncated or not a PyTorch "
                        f"checkpoint ({type(e).__name__}: {detail[:200]})") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"checkpoint {path} holds a {type(checkpoint).__name__}, expected a dict")
    return checkpoint


def list_numbered_checkpoints(output_dir):
    """[(epoch, path)] of checkpoint-<int>.pth in output_dir, newest first."""
    found = []
    for path in Path(output_dir).glob('checkpoint-*.pth'):
        m = re.fullmatch(r'checkpoint-(\d+)\.pth', path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found, reverse=True)


def check_nothing_overwritten(output_dir, resumed) -> None:
    """A run that resumed nothing (new run, --auto_resume false, or no readable checkpoint) must not write
    over the checkpoints already in output_dir."""
    if resumed is not None or not output_dir:
        return
    found = sorted(p.name for p in Path(output_dir).glob('checkpoint-*.pth'))
    if found:
        raise UserError(f"{output_dir} holds checkpoints this run did not resume ({', '.join(found[:3])}; "
                        f"--auto_resume false, a finished run, or none could be read); use --output_dir NEW, "
                        f"or --overwrite true to replace them")


def _check_model_fits(model, state_dict, path, args, ckpt_args):
    """Raises UserError when a checkpoint's weights do not fit the model (another architecture)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    saved_model = ckpt_args.get('model', 'unknown')
    example = (mismatched or missing or unexpected)[0]
    raise UserError(
        f"checkpoint {path} does not fit --model {getattr(args, 'model', '?')} (it was saved for model "
        f"{saved_model}, nb_classes {ckpt_args.get('nb_classes', '?')}): {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} shape-mismatched keys, e.g. {example}. "
        f"Use another --output_dir, or --resume / --auto_resume false")


def auto_load_model(args, model, model_without_ddp, optimizer, loss_scaler, model_ema=None):
    """Resumes from --resume, or (with --auto_resume) from the newest loadable checkpoint-<N>.pth.

    Restores the model (strict), and unless --eval: optimizer, start epoch, scaler, EMA and, in
    single-process runs, the RNG states. Returns the loaded checkpoint dict (None when nothing was
    loaded) so callers can read extra keys such as a best metric.
    """
    checkpoint = None
    if getattr(args, 'auto_resume', False) and not args.resume:
        output_dir = args.output_dir or '.'
        for _, path in list_numbered_checkpoints(output_dir):
            try:
                checkpoint = load_checkpoint(path)
            except UserError as e:
                warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=2)
                continue
            args.resume = str(path)
            break
        print(f"Auto resume checkpoint: {args.resume}")

    if not args.resume:
        return None
    if checkpoint is None:
        checkpoint = load_checkpoint(args.resume)
    print(f"Resume checkpoint {args.resume}")
    if 'model' not in checkpoint:
        raise UserError(f"checkpoint {args.resume} has no 'model' entry (keys: {sorted(checkpoint)[:8]})")
    ckpt_args = checkpoint_args(checkpoint)
    _check_model_fits(model_without_ddp, checkpoint['model'], args.resume, args, ckpt_args)
    model_without_ddp.load_state_dict(checkpoint['model'])

    evaluating = bool(getattr(args, 'eval', False))
    if evaluating:
        from rheed.inference import eval_input_mismatch
        differ = eval_input_mismatch(ckpt_args, vars(args))
        if differ:
            print(f"warning: {args.resume} was trained with {' '.join(differ)}; this evaluation preprocesses "
                  f"frames differently (pass the same flags; scripts/predict.py reads them from the checkpoint)")
    if evaluating or 'optimizer' not in checkpoint or 'epoch' not in checkpoint:
        return checkpoint
    epoch = checkpoint['epoch']
    if isinstance(epoch, str):
        raise UserError(f"cannot resume training from {args.resume} (epoch '{epoch}'); resume from a "
                        f"numbered checkpoint-<N>.pth, or use it with --eval true / --finetune")
    try:
        optimizer.load_state_dict(checkpoint['optimizer'])
    except (ValueError, KeyError) as e:
        raise UserError(f"optimizer state in {args.resume} does not fit this run ({e}); it was written "
                        f"with different optimizer settings") from None
    args.start_epoch = epoch + 1
    if model_ema is not None and getattr(args, 'model_ema', False):
        ema_state = checkpoint.get('model_ema', checkpoint['model'])
        _unwrap_ema(model_ema).load_state_dict(ema_state)
    if 'scaler' in checkpoint:
        loss_scaler.load_state_dict(checkpoint['scaler'])
    if 'rng_state' in checkpoint and get_world_size() == 1:
        set_rng_state(checkpoint['rng_state'])
    print(f"Resuming at epoch {args.start_epoch} with optimizer and scaler state")
    return checkpoint


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------------------------

def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0,
                     start_warmup_value=0, warmup_steps=-1):
    """Per-iteration values: linear warmup, then cosine from base_value to final_value."""
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_steps > 0:
        warmup_iters = warmup_steps
    warmup_schedule = np.array([])
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(math.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def adjust_learning_rate(optimizer, epoch, args):
    """Sets every group's lr for fractional `epoch`: linear warmup, then half-cycle cosine to min_lr.

    Groups with an `lr_scale` key (layer-wise decay) get lr * lr_scale. Returns the unscaled lr.
    """
    if epoch < args.warmup_epochs:
        lr = args.lr * epoch / args.warmup_epochs
    else:
        progress = (epoch - args.warmup_epochs) / max(args.epochs - args.warmup_epochs, 1e-12)
        lr = args.min_lr + (args.lr - args.min_lr) * 0.5 * (1. + math.cos(math.pi * progress))
    for param_group in optimizer.param_groups:
        param_group['lr'] = lr * param_group['lr_scale'] if 'lr_scale' in param_group else lr
    return lr
