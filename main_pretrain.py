"""FCMAE self-supervised pre-training of ConvNeXt-V2 (CPU or CUDA, single process or torchrun)."""
import argparse
import datetime
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.backends.cudnn as cudnn
import torch.distributed as dist
import torchvision.transforms as transforms

import timm_compat  # noqa: F401  (must precede any timm import)
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.optim.optim_factory import add_weight_decay

import models.fcmae as fcmae
import utils
from engine_pretrain import train_one_epoch
from rheed import augment
from rheed import runs
from rheed.errors import UserError, run_trainer
from rheed.frame_cache import cache_short_side, cached_pipeline
from rheed import train_args
from rheed.heldout import check_no_held_out_folders, leave_out_held_out_frames
from rheed.imageio import (IMAGE_EXTENSIONS, ImageListDataset, check_crop_box, list_images, make_loader,
                           verify_files)
from utils import NativeScalerWithGradNormCount as NativeScaler
from utils import str2bool



def get_args_parser():
    parser = argparse.ArgumentParser('FCMAE pre-training', add_help=False)
    parser.add_argument('--batch_size', default=64, type=int,
                        help='images per GPU (per process) in one step')
    parser.add_argument('--epochs', default=800, type=int)
    parser.add_argument('--warmup_epochs', type=int, default=40,
                        help='epochs of linear learning-rate warm-up')
    parser.add_argument('--update_freq', default=1, type=int,
                        help='steps whose gradients are summed before one optimizer update')

    # network
    parser.add_argument('--model', default='convnextv2_base', type=str, metavar='MODEL',
                        help=f'FCMAE model ({", ".join(fcmae.MODEL_NAMES)})')
    parser.add_argument('--input_size', default=224, type=int,
                        help='side of the square input in pixels (a multiple of 32)')
    parser.add_argument('--mask_ratio', default=0.6, type=float,
                        help='fraction of 32-pixel patches hidden from the encoder')
    parser.add_argument('--norm_pix_loss', type=str2bool, nargs='?', const=True, default=True,
                        help='reconstruct each patch normalised to zero mean and unit variance '
                             '(default true; `--norm_pix_loss false` turns it off)')
    parser.add_argument('--decoder_depth', type=int, default=1)
    parser.add_argument('--decoder_embed_dim', type=int, default=512)

    # optimizer and schedule
    parser.add_argument('--weight_decay', type=float, default=0.05,
                        help='AdamW weight decay (default: 0.05)')
    parser.add_argument('--lr', type=float, default=None, metavar='LR',
                        help='absolute peak learning rate; overrides --blr')
    parser.add_argument('--blr', type=float, default=1.5e-4, metavar='LR',
                        help='lr per 256 images: the peak lr is blr * batch_size * update_freq * GPUs / 256')
    parser.add_argument('--min_lr', type=float, default=0., metavar='LR',
                        help='floor of the cosine schedule (default: 0)')
    parser.add_argument('--clip_grad', type=float, default=None, metavar='NORM',
                        help='largest gradient norm before the step (default: no clipping)')

    # data, outputs and RHEED options
    parser.add_argument('--data_path', default='/datasets01/imagenet_full_size/061417/', type=str,
                        help='dataset path: images under <data_path>/train if it exists, else under data_path '
                             '(recursive); val/test split folders are refused')
    parser.add_argument('--unlabeled_data_path', default=None, type=str,
                        help='optional extra folder of unlabeled frames (recursive), added to the training set')
    train_args.add_frame_args(parser)
    parser.add_argument('--output_dir', default='',
                        help='folder for checkpoints and logs; empty writes nothing')
    parser.add_argument('--log_dir', default=None,
                        help='folder for TensorBoard event files (default: none)')
    parser.add_argument('--device', default='cuda',
                        help='cuda or cpu')
    parser.add_argument('--seed', default=0, type=int)
    parser.add_argument('--resume', default='',
                        help='continue the run saved in this checkpoint')
    parser.add_argument('--auto_resume', type=str2bool, default=True)
    parser.add_argument('--save_ckpt', type=str2bool, default=True)
    parser.add_argument('--save_ckpt_freq', default=1, type=int)
    parser.add_argument('--save_ckpt_num', default=3, type=int)
    parser.add_argument('--start_epoch', default=0, type=int, metavar='N',
                        help='first epoch to run (set from the checkpoint when resuming)')
    parser.add_argument('--num_workers', default=10, type=int)
    parser.add_argument('--pin_mem', type=str2bool, default=True,
                        help='page-locked DataLoader batches (faster host-to-GPU copies; ignored on the CPU)')

    # evaluation
    parser.add_argument('--crop_pct', type=float, default=None,
                        help='accepted for compatibility; not used by pre-training')

    # multi-process runs
    parser.add_argument('--world_size', default=1, type=int,
                        help='process count (set by torchrun)')
    parser.add_argument('--local_rank', '--local-rank', default=-1, type=int,
                        help='set by torch.distributed.launch; the rank is read from the environment')
    parser.add_argument('--dist_on_itp', type=str2bool, default=False)
    parser.add_argument('--dist_url', default='env://',
                        help='rendezvous address of the process group')
    train_args.add_run_args(parser, amp_dtype='bfloat16')
    return parser


def resolve_pretrain_files(data_path, unlabeled_data_path=None):
    """All image files for pre-training: <data_path>/train if present, else data_path (recursive),
    plus unlabeled_data_path. Labels and class folders are ignored."""
    sources = []
    root = Path(data_path)
    if not root.is_dir():
        raise UserError(f"--data_path not found: {data_path}")
    train_dir = root / 'train'
    sources.append((train_dir if train_dir.is_dir() else root, '--data_path'))
    if unlabeled_data_path:
        if not Path(unlabeled_data_path).is_dir():
            raise UserError(f"--unlabeled_data_path not found: {unlabeled_data_path}")
        sources.append((Path(unlabeled_data_path), '--unlabeled_data_path'))

    files, seen = [], set()
    for folder, flag in sources:
        found = list_images(folder, recursive=True)
        if not found:
            raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder} ({flag})")
        check_no_held_out_folders(found, flag)
        found = leave_out_held_out_frames(found, folder, flag)
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def build_pretrain_transform(input_size, subtract_background=False, background_mode='global', despeckle=False,
                             pattern_gamma=1.0):
    mean, std = augment.input_mean_std(subtract_background, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    return transforms.Compose([
        *augment.whole_frame_steps(despeckle, subtract_background, background_mode, pattern_gamma),
        transforms.RandomResizedCrop(input_size, scale=(0.2, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=mean, std=std),
    ])


def verified_files(args):
    """Lists and decodes every training file once (on rank 0 when distributed)."""
    def list_and_verify():
        files = resolve_pretrain_files(args.data_path, args.unlabeled_data_path)
        return verify_files(files, skip_corrupt=args.skip_corrupt, crop=args.frame_crop)[0]
    return utils.on_main_process(list_and_verify)


def check_args(args):
    """Cheap checks that need no data, so mistakes fail before anything is read or written."""
    if args.model not in fcmae.MODEL_NAMES:
        raise UserError(f"unknown --model {args.model!r}; choose one of {', '.join(fcmae.MODEL_NAMES)}")
    if args.input_size < 32 or args.input_size % 32 != 0:
        raise UserError(f"--input_size {args.input_size} must be a multiple of 32 (the FCMAE patch size)")
    if torch.device(args.device).type == 'cuda' and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA GPU is available; use --device cpu")
    if args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: pre-train for at least one epoch")
    check_crop_box(args.frame_crop)
    train_args.check_frame_args(args)
    if args.output_dir:
        runs.check_output_dir(args.output_dir)
        runs.check_ownership(args.output_dir, run_identity(args), args.overwrite, resumable=args.auto_resume)


def run_identity(args) -> dict:
    return runs.run_identity('pretrain', args.model, args.data_path)


def build_model(args):
    return fcmae.__dict__[args.model](
        img_size=args.input_size,
        mask_ratio=args.mask_ratio,
        decoder_depth=args.decoder_depth,
        decoder_embed_dim=args.decoder_embed_dim,
        norm_pix_loss=args.norm_pix_loss,
    )


def main(args):
    check_args(args)
    device = torch.device(args.device)
    utils.init_distributed_mode(args)
    print(f"job dir: {os.path.dirname(os.path.realpath(__file__))}")
    print(f"{args}".replace(', ', ',\n'))

    seed = args.seed + utils.get_rank()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if device.type == 'cuda':
        cudnn.benchmark = True

    model = build_model(args)
    files = verified_files(args)
    num_tasks = utils.get_world_size()
    global_rank = utils.get_rank()
    loader = make_loader(args.bit_scaling, max_value=args.bit_max, crop=args.frame_crop)
    transform = build_pretrain_transform(args.input_size, args.subtract_background, args.background_mode,
                                         args.despeckle, args.pattern_gamma)
    if args.frame_cache:
        settings = {'data_path': os.path.abspath(args.data_path), 'bit_scaling': args.bit_scaling,
                    'bit_max': args.bit_max, 'frame_crop': args.frame_crop}
        cache_dir = args.frame_cache_dir or os.path.join(args.output_dir or '.', 'frame_cache')
        loader, transform = cached_pipeline(files, loader, transform, cache_dir, settings, utils.on_main_process,
                                            cache_short_side(args.frame_cache_size, args.input_size))
    dataset_train = ImageListDataset(files, transform=transform, loader=loader)
    print(f"Pre-training on {len(dataset_train)} images")
    if len(dataset_train) < args.batch_size * num_tasks:
        raise UserError(f"only {len(dataset_train)} images, fewer than one batch ({args.batch_size} x "
                        f"{num_tasks} processes); lower --batch_size")
    sampler_train = utils.build_train_sampler(dataset_train, args)
    print(f"Sampler_train = {sampler_train}")


    data_loader_train = torch.utils.data.DataLoader(
        dataset_train, sampler=sampler_train,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        pin_memory=args.pin_mem and device.type == 'cuda',
        drop_last=True,
        persistent_workers=args.num_workers > 0,
    )

    model.to(device)
    if args.channels_last:  # NHWC convolutions (tensor cores); the weights and the checkpoint stay the same
        model.to(memory_format=torch.channels_last)
    model_without_ddp = model
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"Model = {model_without_ddp}")
    print(f"number of params: {n_parameters}")

    eff_batch_size = args.batch_size * args.update_freq * num_tasks
    num_training_steps_per_epoch = len(dataset_train) // eff_batch_size
    if args.lr is None:
        args.lr = args.blr * eff_batch_size / 256
    print(f"base lr: {args.lr * 256 / eff_batch_size:.2e}")
    print(f"actual lr: {args.lr:.2e}")
    print(f"accumulate grad iterations: {args.update_freq}")
    print(f"effective batch size: {eff_batch_size}")

    if args.distributed:
        # Every parameter takes part in each forward of the dense FCMAE (upstream's sparse one needed True).
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[args.gpu] if device.type == 'cuda' else None, find_unused_parameters=False)
        model_without_ddp = model.module
    if args.compile:  # model_without_ddp stays the plain module: state_dict keys are unchanged
        model = torch.compile(model)

    # timm's add_weight_decay, as upstream: no decay for 1-D tensors and biases only
    # (GRN gamma/beta and mask_token are decayed; see docs/UPSTREAM_DIFF.md).
    param_groups = add_weight_decay(model_without_ddp, args.weight_decay)
    optimizer = torch.optim.AdamW(param_groups, lr=args.lr, betas=(0.9, 0.95), fused=args.fused_optimizer or None)
    print(optimizer)
    amp_dtype = utils.get_amp_dtype(args.amp_dtype)
    use_amp = args.use_amp and device.type == 'cuda'
    if args.use_amp and not use_amp:
        print("--use_amp is ignored on CPU (training runs in float32)")
    args.use_amp = use_amp
    loss_scaler = NativeScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    if args.overwrite and args.output_dir and utils.is_main_process():
        runs.clear_previous_run(args.output_dir)
    if utils.is_dist_avail_and_initialized():
        dist.barrier()  # no rank looks for checkpoints to resume before they are cleared
    resumed = utils.auto_load_model(args=args, model=model, model_without_ddp=model_without_ddp,
                                    optimizer=optimizer, loss_scaler=loss_scaler)
    utils.check_nothing_overwritten(args.output_dir, resumed)

    # From here on files are written.
    if args.output_dir and utils.is_main_process():
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        runs.remove_stale_temporaries(args.output_dir)
        runs.record_owner(args.output_dir, run_identity(args))
        utils.trim_log(Path(args.output_dir) / 'log.txt', args.start_epoch)
    log_writer = None
    if global_rank == 0 and args.log_dir is not None:
        os.makedirs(args.log_dir, exist_ok=True)
        log_writer = utils.TensorboardLogger(log_dir=args.log_dir)
    print(f"Start training for {args.epochs} epochs (from epoch {args.start_epoch})")
    start_time = time.time()
    for epoch in range(args.start_epoch, args.epochs):
        sampler_train.set_epoch(epoch)  # every epoch, also single-process: a new order each epoch
        if log_writer is not None:
            log_writer.set_step(epoch * num_training_steps_per_epoch * args.update_freq)
        train_stats = train_one_epoch(model, data_loader_train, optimizer, device, epoch, loss_scaler,
                                      log_writer=log_writer, args=args)
        log_stats = {**{f'train_{k}': v for k, v in train_stats.items()},
                     'epoch': epoch, 'n_parameters': n_parameters}
        # log.txt first, then the checkpoint: checkpoint-N.pth on disk implies its log line exists
        if args.output_dir and utils.is_main_process():
            if log_writer is not None:
                log_writer.flush()
            with open(os.path.join(args.output_dir, "log.txt"), mode="a", encoding="utf-8") as f:
                f.write(json.dumps(log_stats) + "\n")
        if args.output_dir and args.save_ckpt:
            if (epoch + 1) % args.save_ckpt_freq == 0 or epoch + 1 == args.epochs:
                utils.save_model(args=args, model=model, model_without_ddp=model_without_ddp,
                                 optimizer=optimizer, loss_scaler=loss_scaler, epoch=epoch)

    total_time = time.time() - start_time
    print(f"Training time {datetime.timedelta(seconds=int(total_time))}")
    if args.distributed:
        dist.destroy_process_group()


def cli(argv=None):
    parser = argparse.ArgumentParser('FCMAE pre-training', parents=[get_args_parser()])
    args = parser.parse_args(argv)
    run_trainer(main, args)


if __name__ == '__main__':
    cli()
