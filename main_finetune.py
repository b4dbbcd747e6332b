"""Supervised fine-tuning / evaluation of ConvNeXt-V2 classifiers (upstream CLI plus RHEED additions).

Single process:  python main_finetune.py --model convnextv2_atto --data_set RHEED --data_path data_rheed_split ...
Distributed:     torchrun --nproc_per_node 4 main_finetune.py ... (gloo with --device cpu, nccl with cuda)
"""
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

import timm_compat  # noqa: F401
from timm.data.mixup import Mixup
from timm.models.layers import trunc_normal_
from timm.utils import ModelEma

import datasets
import models.convnextv2 as convnextv2
from models import baselines
import utils
from datasets import build_dataset, default_test_path
from engine_finetune import evaluate, flat_metrics, train_one_epoch
from models.utils import load_pretrained_weights
from optim_factory import LayerDecayValueAssigner, create_optimizer
from rheed import finetune_report
from rheed import runs
from rheed.errors import UserError, run_trainer, warn
from rheed.imageio import check_crop_box
from rheed.losses import build_criterion, mixup_active
from rheed.sampling import BalancedSampler
from rheed import train_args
from rheed.tta import view_sizes
from utils import NativeScalerWithGradNormCount as NativeScaler
from utils import str2bool

BEST_METRICS = ('macro_f1', 'accuracy', 'balanced_accuracy', 'roc_auc', 'loss', 'last')


def get_args_parser():
    parser = argparse.ArgumentParser('FCMAE fine-tuning', add_help=False)
    parser.add_argument('--batch_size', default=64, type=int, help='images per GPU (per process) in one step')
    parser.add_argument('--epochs', default=100, type=int)
    parser.add_argument('--update_freq', default=1, type=int,
                        help='steps whose gradients are summed before one optimizer update')

    # network
    parser.add_argument('--model', default='convnextv2_base', type=str, metavar='MODEL',
                        help=f'network: {", ".join(convnextv2.MODEL_NAMES)}; torchvision '
                             f'baselines: {", ".join(baselines.BASELINE_NAMES)}')
    parser.add_argument('--input_size', default=224, type=int, help='side of the square network input in pixels')
    parser.add_argument('--drop_path', type=float, default=0., metavar='PCT',
                        help='stochastic depth: largest drop probability of a residual block (default: 0)')
    parser.add_argument('--layer_decay_type', type=str, choices=['single', 'group'], default='single',
                        help='"single" = layer id per block, "group" = 12 groups as in upstream')

    # exponential moving average of the weights
    parser.add_argument('--model_ema', type=str2bool, default=False)
    parser.add_argument('--model_ema_decay', type=float, default=0.9999,
                        help='decay of the exponential moving average of the weights')
    parser.add_argument('--model_ema_force_cpu', type=str2bool, default=False, help='keep the EMA copy on the CPU')
    parser.add_argument('--model_ema_eval', type=str2bool, default=False,
                        help='also validate the EMA weights each epoch')

    # optimizer and schedule
    parser.add_argument('--clip_grad', type=float, default=None, metavar='NORM',
                        help='largest gradient norm before the step (default: no clipping); with and without AMP')
    parser.add_argument('--weight_decay', type=float, default=0.05, help='AdamW weight decay (default: 0.05)')
    parser.add_argument('--lr', type=float, default=None, metavar='LR',
                        help='absolute peak learning rate; overrides --blr')
    parser.add_argument('--blr', type=float, default=5e-4, metavar='LR',
                        help='lr per 256 images: the peak lr is blr * batch_size * update_freq * GPUs / 256')
    parser.add_argument('--layer_decay', type=float, default=1.0)
    parser.add_argument('--min_lr', type=float, default=1e-6, metavar='LR',
                        help='floor of the cosine schedule (default: 1e-6)')
    parser.add_argument('--warmup_epochs', type=int, default=20, metavar='N',
                        help='epochs of linear learning-rate warm-up')
    parser.add_argument('--warmup_steps', type=int, default=-1, metavar='N',
                        help='optimizer steps of linear lr warm-up; when > 0 it replaces --warmup_epochs (small data '
                             'sets have few steps per epoch, so a warm-up in epochs can be too short or too long)')
    parser.add_argument('--opt', default='adamw', type=str, metavar='OPTIMIZER',
                        help='optimizer name understood by timm (default: adamw)')
    parser.add_argument('--opt_eps', default=1e-8, type=float, metavar='EPSILON',
                        help='epsilon of the Adam-type optimizers (default: 1e-8)')
    parser.add_argument('--opt_betas', default=None, type=float, nargs='+', metavar='BETA',
                        help='beta coefficients of the optimizer (default: its own)')
    parser.add_argument('--momentum', type=float, default=0.9, metavar='M',
                        help='momentum when --opt is sgd or momentum (default: 0.9)')
    parser.add_argument('--weight_decay_end', type=float, default=None,
                        help='accepted and ignored, as upstream: the weight decay stays constant')

    # training augmentation (timm, --aug_mode upstream)
    parser.add_argument('--color_jitter', type=float, default=None, metavar='PCT',
                        help='colour jitter strength; only used when --aa is empty')
    parser.add_argument('--aa', type=str, default='rand-m9-mstd0.5-inc1', metavar='NAME',
                        help='timm auto-augment policy string, empty for none (default: rand-m9-mstd0.5-inc1)')
    parser.add_argument('--smoothing', type=float, default=0.1,
                        help='label-smoothing factor of the loss (default: 0.1)')
    parser.add_argument('--train_interpolation', type=str, default='bicubic',
                        help='resampling filter of training crops: random, bilinear or bicubic (default: bicubic)')

    # random erasing
    parser.add_argument('--reprob', type=float, default=0.25, metavar='PCT',
                        help='probability of random erasing per image (default: 0.25)')
    parser.add_argument('--remode', type=str, default='pixel',
                        help='fill of erased boxes: const, rand or pixel (default: pixel)')
    parser.add_argument('--recount', type=int, default=1, help='boxes erased per image (default: 1)')
    parser.add_argument('--resplit', type=str2bool, default=False,
                        help='accepted and ignored, as upstream')

    # mixup / cutmix
    parser.add_argument('--mixup', type=float, default=0, help='beta-distribution alpha of mixup; 0 turns mixup off')
    parser.add_argument('--cutmix', type=float, default=0, help='beta-distribution alpha of cutmix; 0 turns cutmix off')
    parser.add_argument('--cutmix_minmax', type=float, nargs='+', default=None,
                        help='box-size range of cutmix as two fractions; when set it replaces --cutmix alpha')
    parser.add_argument('--mixup_prob', type=float, default=1.0,
                        help='chance that a batch is mixed at all when mixup or cutmix is on')
    parser.add_argument('--mixup_switch_prob', type=float, default=0.5,
                        help='with both on: chance of cutmix instead of mixup')
    parser.add_argument('--mixup_mode', type=str, default='batch',
                        help='granularity of the mixing draws: batch, pair or elem')

    # starting weights
    parser.add_argument('--finetune', default='', help='start from these weights (an FCMAE or classifier checkpoint)')
    parser.add_argument('--head_init_scale', default=0.001, type=float,
                        help='factor applied to the freshly initialised head weights and bias')
    parser.add_argument('--train_stem_bias', type=str2bool, default=True,
                        help='false: keep the stem convolution bias at its initial value. With '
                             '--subtract_background the background patches are all zero, the stem '
                             'LayerNorm sees zero-variance inputs there and the bias gets ~1000x the '
                             'gradient of any other tensor, which stalls training from scratch')
    parser.add_argument('--model_key', default='model|module', type=str,
                        help='accepted and ignored, as upstream (weights are read from "model")')
    parser.add_argument('--model_prefix', default='', type=str)

    # data, outputs and RHEED options
    parser.add_argument('--data_path', default='/datasets01/imagenet_full_size/061417/', type=str,
                        help='data folder (RHEED: the split root holding train/, val/ and test/)')
    parser.add_argument('--nb_classes', default=None, type=int,
                        help='classes of the head (default: counted from the class folders; a given value must '
                             'match them)')
    parser.add_argument('--output_dir', default='', help='folder for checkpoints and logs; empty writes nothing')
    parser.add_argument('--log_dir', default=None, help='folder for TensorBoard event files (default: none)')
    parser.add_argument('--device', default='cuda', help='cuda or cpu')
    parser.add_argument('--seed', default=0, type=int)
    parser.add_argument('--resume', default='', help='continue the run saved in this checkpoint')

    parser.add_argument('--eval_data_path', default=None, type=str,
                        help='validation set (image_folder; RHEED default: <data_path>/val)')
    parser.add_argument('--test_data_path', default=None, type=str,
                        help='test set evaluated with the best checkpoint at the end '
                             '(RHEED default: <data_path>/test when it exists)')
    parser.add_argument('--imagenet_default_mean_and_std', type=str2bool, default=True)
    parser.add_argument('--data_set', default='IMNET', choices=list(datasets.DATA_SETS), type=str,
                        help='dataset type; RHEED reads train/, val/ and test/ under --data_path')
    train_args.add_frame_args(parser)
    parser.add_argument('--aug_mode', default='upstream', choices=['upstream', 'rheed'],
                        help='upstream: timm transforms (--aa, --reprob, centre-crop evaluation); rheed: '
                             'rheed.augment (frame-shaped crops of --crop_scale, both flips, small rotations, '
                             'brightness/contrast/gamma, blur, noise; the whole frame resized for evaluation)')
    parser.add_argument('--camera_aug', type=str2bool, default=False,
                        help='--aug_mode rheed: before background subtraction, re-record 2 of 3 training frames as '
                             'a random camera would (gain that saturates, gamma, JPEG; rheed.augment.RandomCamera); '
                             'with --frame_cache, 3 such views per frame are drawn once and stored')
    parser.add_argument('--min_epoch_size', type=int, default=0,
                        help='with fewer training images than this, one epoch passes several times over them '
                             '(reshuffled each pass), so that small sets still get enough optimizer steps')
    parser.add_argument('--crop_scale', default=[0.08, 1.0], type=float, nargs=2, metavar=('MIN', 'MAX'),
                        help='area range of the training RandomResizedCrop (upstream: 0.08 1.0); RHEED frames '
                             'want a larger minimum such as 0.5 so the crop keeps the diffraction pattern; with '
                             '--aug_mode rheed a MAX above 1 also zooms out (window larger than the frame, zero outside)')
    parser.add_argument('--crop_shift', default=0.0, type=float,
                        help='--aug_mode rheed: the training window may reach this share of the frame width/height '
                             'past the frame edges (zero outside), so patterns are also seen off-centre; default 0')
    parser.add_argument('--pad_aspect', type=train_args.aspect_ratio, default=0.0, metavar='W:H',
                        help='--aug_mode rheed: pad every frame with zeros to this aspect ratio (e.g. 4:3) before it '
                             'is squashed to the square input, so a pattern keeps the same proportions on any sensor '
                             'shape; training windows come from the padded frame; stored in the checkpoint (default: off)')
    parser.add_argument('--class_weights', default='none', type=str,
                        help='per-class loss weights: none, auto (inverse class frequency, mean 1), effective '
                             '(effective number of samples, mean 1) or a comma-separated list, one per class')
    parser.add_argument('--class_weights_beta', default=0.999, type=float,
                        help='beta of --class_weights effective (default: 0.999)')
    parser.add_argument('--focal_gamma', default=0.0, type=float,
                        help='> 0: focal loss (1 - p_t)^gamma * CE, with the class weights and smoothing above '
                             '(Lin et al. 2017; gamma 2 is usual); 0: cross-entropy as upstream')
    parser.add_argument('--balanced_sampler', type=str2bool, default=False,
                        help='draw training frames with replacement, each class equally often on average '
                             '(rheed/sampling.py); default: shuffle every frame once per epoch as upstream')
    parser.add_argument('--tta_flip', type=str2bool, default=False,
                        help='evaluate (validation, test, and predict.py with this checkpoint) on the average '
                             'logits of the four left-right/up-down flips of each frame')
    parser.add_argument('--tta_scales', type=float, nargs='+', default=None,
                        help='evaluate (validation, test, and predict.py with this checkpoint) on the average '
                             'logits of views of the whole frame at input_size times each scale, e.g. 1 1.125 '
                             '(--aug_mode rheed; default: one view at input_size)')
    parser.add_argument('--calibrate', type=str2bool, default=True,
                        help='after training, fit a softmax temperature on the validation set; it is stored in '
                             'checkpoint-best.pth and used for the test metrics and by scripts/predict.py')
    parser.add_argument('--tune_threshold', type=str2bool, default=False,
                        help='with --calibrate and two classes: also decide with the threshold that maximises '
                             'validation macro-F1 instead of argmax (default false: on small validation sets it '
                             'did not transfer to new growth runs, see docs/EXPERIMENTS.md)')
    parser.add_argument('--best_metric', default='macro_f1', choices=list(BEST_METRICS),
                        help='validation metric that selects checkpoint-best.pth (default: macro_f1); last: '
                             'the final epoch (validation still runs for the log and the calibration; for '
                             'validation sets of a few growth runs, whose best epoch is mostly noise)')
    parser.add_argument('--auto_resume', type=str2bool, default=True)
    parser.add_argument('--save_ckpt', type=str2bool, default=True)
    parser.add_argument('--save_ckpt_freq', default=1, type=int)
    parser.add_argument('--save_ckpt_num', default=3, type=int)

    parser.add_argument('--start_epoch', default=0, type=int, metavar='N',
                        help='first epoch to run (set from the checkpoint when resuming)')
    parser.add_argument('--eval', type=str2bool, default=False, help='evaluate the --resume checkpoint and stop')
    parser.add_argument('--dist_eval', type=str2bool, default=True,
                        help='split validation over the processes (every sample is still counted once)')
    parser.add_argument('--disable_eval', type=str2bool, default=False,
                        help='skip validation after each epoch')
    parser.add_argument('--num_workers', default=10, type=int)
    parser.add_argument('--pin_mem', type=str2bool, default=True,
                        help='page-locked DataLoader batches (faster host-to-GPU copies; ignored on the CPU)')

    # evaluation
    parser.add_argument('--crop_pct', type=float, default=None)

    # multi-process runs
    parser.add_argument('--world_size', default=1, type=int, help='process count (set by torchrun)')
    parser.add_argument('--local_rank', '--local-rank', default=-1, type=int)
    parser.add_argument('--dist_on_itp', type=str2bool, default=False)
    parser.add_argument('--dist_url', default='env://', help='rendezvous address of the process group')
    train_args.add_run_args(parser, amp_dtype='float16')
    return parser


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def check_args(args):
    """Cheap checks that need no data, so mistakes fail before anything is read or written."""
    if args.model not in convnextv2.MODEL_NAMES + baselines.BASELINE_NAMES:
        raise UserError(f"unknown --model {args.model}; choose from "
                        f"{', '.join(convnextv2.MODEL_NAMES + baselines.BASELINE_NAMES)}")
    if args.model in baselines.BASELINE_NAMES and args.layer_decay != 1.0:
        raise UserError(f"--layer_decay {args.layer_decay} is defined for ConvNeXt-V2 stages only; use "
                        f"--layer_decay 1.0 with the torchvision baseline {args.model}")
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA GPU is available; use --device cpu")
    if args.finetune and not os.path.isfile(args.finetune) and '://' not in args.finetune:
        raise UserError(f"--finetune checkpoint not found: {args.finetune}. Official weights must be downloaded "
                        f"with scripts/download_weights.sh on a machine with internet access and copied here")
    if args.resume and not os.path.isfile(args.resume) and '://' not in args.resume:
        raise UserError(f"--resume checkpoint not found: {args.resume}")
    if args.update_freq < 1 or args.batch_size < 1:
        raise UserError("--batch_size and --update_freq must be at least 1")
    if mixup_active(args) and args.batch_size % 2:
        raise UserError(f"--batch_size {args.batch_size} must be even with mixup/cutmix")
    if args.eval and args.data_set == 'image_folder' and not args.eval_data_path and not args.test_data_path:
        raise UserError("--eval true with --data_set image_folder needs --eval_data_path or --test_data_path")
    if args.epochs < 1 and not args.eval:
        raise UserError(f"--epochs {args.epochs}: train for at least one epoch (or evaluate with --eval true)")
    if args.input_size < 32:
        raise UserError(f"--input_size {args.input_size} is too small: the model downsamples by 32")
    low, high = args.crop_scale
    if not 0 < low <= high or (high > 1 and args.aug_mode != 'rheed'):
        raise UserError(f"--crop_scale {low} {high}: needs 0 < MIN <= MAX, and MAX <= 1 unless --aug_mode rheed "
                        f"(where MAX > 1 zooms out)")
    if args.crop_shift and (args.aug_mode != 'rheed' or not 0 < args.crop_shift < 0.5):
        raise UserError(f"--crop_shift {args.crop_shift}: needs --aug_mode rheed and a share between 0 and 0.5")
    for flag in ('camera_aug', 'despeckle'):
        if getattr(args, flag) and args.aug_mode != 'rheed':
            raise UserError(f"--{flag} true needs --aug_mode rheed")
    if args.pad_aspect and args.aug_mode != 'rheed':
        raise UserError("--pad_aspect needs --aug_mode rheed")
    if args.tta_scales and (args.aug_mode != 'rheed' or min(args.tta_scales) <= 0):
        raise UserError(f"--tta_scales {' '.join(map(str, args.tta_scales))}: needs --aug_mode rheed and scales above 0")
    check_crop_box(args.frame_crop)
    train_args.check_frame_args(args)
    if args.output_dir:
        runs.check_output_dir(args.output_dir)
        if not args.eval:
            runs.check_ownership(args.output_dir, run_identity(args), args.overwrite, resumable=args.auto_resume)


def run_identity(args) -> dict:
    return runs.run_identity('finetune', args.model, args.data_path)


def eval_loader(dataset, args, persistent=False):
    if args.dist_eval:
        num_tasks = utils.get_world_size()
        if len(dataset) % num_tasks != 0:
            print('Warning: the evaluation set size is not divisible by the number of processes; the padded '
                  'duplicates are dropped again when the predictions are gathered.')
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=num_tasks, rank=utils.get_rank(),
                                                      shuffle=False)
    else:
        sampler = torch.utils.data.SequentialSampler(dataset)
    return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=args.batch_size,
                                       num_workers=args.num_workers, pin_memory=args.pin_mem, drop_last=False,
                                       persistent_workers=persistent and args.num_workers > 0)


def selection_value(stats: dict, metric: str, epoch: int):
    """The number --best_metric compares: a validation metric, or the epoch itself for 'last'."""
    return epoch if metric == 'last' else stats[metric]


def is_better(value, best, metric):
    if value is None:
        return False
    if best is None:
        return True
    return value < best if metric == 'loss' else value > best


def report_checkpoint(args, model, device, class_names, loaders, checkpoint, checkpoint_epoch, suffix='',
                      fitted=None):
    """Evaluates `model` on val and test, calibrates on val (unless `fitted` is given or --calibrate false)
    and writes the reports (main process). Returns the calibration used."""
    raw = {split: (evaluate(loader, model, device, use_amp=args.use_amp, amp_dtype=args.amp_dtype,
                            class_names=class_names, tta_flip=args.tta_flip,
                            tta_sizes=view_sizes(args.input_size, args.tta_scales)), loader.dataset)
           for split, (loader, _) in loaders.items() if loader is not None}
    info = dict(data_path=os.path.abspath(loaders['test'][1]) if 'test' in raw else None,
                checkpoint=str(checkpoint), checkpoint_epoch=checkpoint_epoch, best_metric=args.best_metric,
                model=args.model)
    output_dir = Path(args.output_dir) if args.output_dir and utils.is_main_process() else None
    return finetune_report.report(raw, class_names, fitted, args.calibrate, output_dir, info, suffix,
                                  tune_threshold=args.tune_threshold)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def main(args):
    check_args(args)
    utils.init_distributed_mode(args)
    print(args)
    device = torch.device(args.device)
    if args.use_amp and device.type != 'cuda':
        print("Warning: --use_amp only applies to CUDA; running in float32 on", device)
        args.use_amp = False

    # a different seed per rank, same sequence on every rerun
    seed = args.seed + utils.get_rank()
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if device.type == 'cuda':
        cudnn.benchmark = True

    # Every dataset is built (and every image checked) before anything is written; --eval only needs the
    # training set's classes, so its frames are neither decoded nor cached.
    dataset_train, args.nb_classes = build_dataset(is_train=True, args=args, listing_only=args.eval)
    class_names = [str(c) for c in dataset_train.classes]
    dataset_val = None
    if args.disable_eval:
        args.dist_eval = False
    else:
        dataset_val, _ = build_dataset(is_train=False, args=args)
    test_path = default_test_path(args)
    dataset_test = None
    if test_path:
        args.test_data_path = test_path
        dataset_test, _ = build_dataset(is_train=False, args=args, split='test')
    if args.best_metric == 'roc_auc' and args.nb_classes != 2 and not args.disable_eval:
        raise UserError(f"--best_metric roc_auc needs 2 classes, the data has {args.nb_classes}; "
                        f"use macro_f1, balanced_accuracy, accuracy or loss")
    class_counts = np.bincount(np.asarray(dataset_train.targets), minlength=args.nb_classes).tolist()
    print(f"Classes: {class_names}, training images per class: {class_counts}")

    num_tasks = utils.get_world_size()
    global_rank = utils.get_rank()
    epoch_set, repeats = dataset_train, 1  # what one epoch draws from
    if len(dataset_train) < args.min_epoch_size:
        repeats = -(-args.min_epoch_size // len(dataset_train))
        epoch_set = torch.utils.data.ConcatDataset([dataset_train] * repeats)
        print(f"Each epoch passes {repeats} times over the {len(dataset_train)} training images (--min_epoch_size "
              f"{args.min_epoch_size})")
    if args.balanced_sampler:
        sampler_train = BalancedSampler(list(dataset_train.targets) * repeats, num_replicas=num_tasks,
                                        rank=global_rank, seed=args.seed)
        if args.class_weights != 'none':
            warn("--balanced_sampler and --class_weights both correct the class imbalance; usually one is enough")
    else:
        sampler_train = utils.build_train_sampler(epoch_set, args)
    print("Sampler_train = %s" % str(sampler_train))
    args.pin_mem = args.pin_mem and device.type == 'cuda'
    data_loader_train = torch.utils.data.DataLoader(
        epoch_set, sampler=sampler_train, batch_size=args.batch_size, num_workers=args.num_workers,
        pin_memory=args.pin_mem, drop_last=True, persistent_workers=args.num_workers > 0)
    if not args.eval and len(data_loader_train) == 0:
        raise UserError(f"the training set has {len(dataset_train)} images per process, fewer than one batch "
                        f"(--batch_size {args.batch_size}); use a smaller --batch_size")
    # training and validation run every epoch: their workers stay alive between epochs (test runs once)
    data_loader_val = eval_loader(dataset_val, args, persistent=not args.eval) if dataset_val is not None else None
    data_loader_test = eval_loader(dataset_test, args) if dataset_test is not None else None

    mixup_fn = None
    if mixup_active(args):
        print("Mixup is activated!")
        mixup_fn = Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                         prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                         label_smoothing=args.smoothing, num_classes=args.nb_classes)

    if args.model in baselines.BASELINE_NAMES:
        model = baselines.build_baseline(args.model, num_classes=args.nb_classes, drop_path_rate=args.drop_path,
                                         head_init_scale=args.head_init_scale)
    else:
        model = convnextv2.__dict__[args.model](num_classes=args.nb_classes, drop_path_rate=args.drop_path,
                                                head_init_scale=args.head_init_scale)

    if args.finetune:
        checkpoint = utils.load_checkpoint(args.finetune)
        if args.model in baselines.BASELINE_NAMES:  # torchvision's ImageNet state dicts use their own names
            checkpoint = baselines.from_torchvision_keys(checkpoint)
        print(f"Load pre-trained checkpoint from: {args.finetune}")
        report = load_pretrained_weights(model, checkpoint, model_prefix=args.model_prefix)
        print(f"Weights not loaded from the checkpoint: {report['missing']}")
        print(f"Checkpoint entries not used: {report['unexpected']}")
        if report['mismatched']:
            print(f"Head skipped (other number of classes): {report['mismatched']}")
        # the classifier head always starts fresh, as upstream
        trunc_normal_(model.head.weight, std=2e-5)
        torch.nn.init.constant_(model.head.bias, 0.)

    if not args.train_stem_bias and hasattr(model, 'downsample_layers'):  # ConvNeXt-V2's stem; baselines have none
        model.downsample_layers[0][0].bias.requires_grad_(False)
    model.to(device)
    if args.channels_last:  # NHWC convolutions (tensor cores); the weights and the checkpoint stay the same
        model.to(memory_format=torch.channels_last)

    model_ema = None
    if args.model_ema:
        # the EMA copy is taken from the model on its device and before the DDP wrapper exists
        model_ema = ModelEma(model, decay=args.model_ema_decay, device='cpu' if args.model_ema_force_cpu else '',
                             resume='')
        print("Using EMA with decay = %.8f" % args.model_ema_decay)

    model_without_ddp = model
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print("Model = %s" % str(model_without_ddp))
    print('number of params:', n_parameters)

    total_batch_size = args.batch_size * args.update_freq * num_tasks
    num_training_steps_per_epoch = len(epoch_set) // total_batch_size
    if args.lr is None:
        args.lr = args.blr * total_batch_size / 256
    print("base lr: %.2e" % (args.lr * 256 / total_batch_size))
    print("actual lr: %.2e" % args.lr)
    if args.warmup_steps > 0:
        args.warmup_epochs = args.warmup_steps / max(len(data_loader_train) // args.update_freq, 1)
        if args.warmup_epochs > args.epochs / 2:  # a short run still reaches its peak lr
            print(f"warm-up of {args.warmup_steps} steps is longer than half of the run: shortened to half")
            args.warmup_epochs = args.epochs / 2
        print(f"warm-up: {args.warmup_epochs:.2f} epochs")
    print("accumulate grad iterations: %d" % args.update_freq)
    print("effective batch size: %d" % total_batch_size)
    if not args.eval:  # on small sets the step count, not the epoch count, decides (docs/EXPERIMENTS.md 22)
        print(f"optimisation steps: {num_training_steps_per_epoch} per epoch, "
              f"{num_training_steps_per_epoch * args.epochs} in total")

    if args.layer_decay != 1.0:
        num_layers = 12 if args.layer_decay_type == 'group' else sum(model_without_ddp.depths)
        assigner = LayerDecayValueAssigner(
            [args.layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2)],
            depths=model_without_ddp.depths, layer_decay_type=args.layer_decay_type)
        print("Assigned values = %s" % str(assigner.values))
    else:
        assigner = None

    if args.distributed:
        device_ids = [args.gpu] if device.type == 'cuda' else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)
        model_without_ddp = model.module
    if args.compile:  # model_without_ddp stays the plain module: state_dict keys are unchanged
        model = torch.compile(model)

    optimizer = create_optimizer(
        args, model_without_ddp, skip_list=None,
        get_num_layer=assigner.get_layer_id if assigner is not None else None,
        get_layer_scale=assigner.get_scale if assigner is not None else None)
    loss_scaler = NativeScaler(device_type=device.type,
                               enabled=args.use_amp and args.amp_dtype == 'float16')

    criterion = build_criterion(args, class_counts).to(device)
    print("criterion = %s" % str(criterion))

    if args.overwrite and not args.eval and args.output_dir and utils.is_main_process():
        runs.clear_previous_run(args.output_dir)
    if utils.is_dist_avail_and_initialized():
        torch.distributed.barrier()  # no rank looks for checkpoints to resume before they are cleared
    resumed = utils.auto_load_model(args=args, model=model, model_without_ddp=model_without_ddp,
                                    optimizer=optimizer, loss_scaler=loss_scaler, model_ema=model_ema)
    best = {'value': None, 'epoch': None, 'value_ema': None, 'epoch_ema': None}
    if resumed is not None:
        saved_names = resumed.get('class_names')
        if saved_names is not None and list(saved_names) != class_names:
            raise UserError(f"checkpoint {args.resume} was trained on classes {list(saved_names)}, this dataset "
                            f"has {class_names}; use another --output_dir")
        if resumed.get('best_metric') == args.best_metric:
            best = {k: resumed.get(f'best_{k}') for k in best}
    if not args.eval:
        utils.check_nothing_overwritten(args.output_dir, resumed)

    loaders = {'val': (data_loader_val, dataset_val and datasets.dataset_root(False, args)),
               'test': (data_loader_test, test_path)}
    if args.eval:
        if resumed is None:
            raise UserError("--eval true needs a checkpoint: pass --resume <checkpoint-best.pth>")
        if args.output_dir:  # an evaluation never replaces the training run's reports
            args.output_dir = runs.eval_output_dir(args.output_dir)
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            print(f"Evaluation reports go to {args.output_dir}")
        epoch = resumed.get('epoch')
        if isinstance(epoch, str):  # checkpoint-best(-ema).pth: report the epoch it was chosen at
            epoch = resumed.get('best_epoch_ema' if epoch == 'best-ema' else 'best_epoch', epoch)
        # a checkpoint that carries its calibration is evaluated with it, as predict.py does
        report_checkpoint(args, model, device, class_names, loaders, args.resume, epoch,
                          fitted=resumed.get('calibration') if args.calibrate else None)
        return

    # From here on files are written.
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        if utils.is_main_process():
            runs.remove_stale_temporaries(args.output_dir)
            runs.record_owner(args.output_dir, run_identity(args))
            utils.trim_log(Path(args.output_dir) / 'log.txt', args.start_epoch)
    log_writer = None
    if global_rank == 0 and args.log_dir is not None:
        os.makedirs(args.log_dir, exist_ok=True)
        log_writer = utils.TensorboardLogger(log_dir=args.log_dir)

    print(f"Start training for {args.epochs} epochs (best checkpoint on validation {args.best_metric})")
    start_time = time.time()
    for epoch in range(args.start_epoch, args.epochs):
        data_loader_train.sampler.set_epoch(epoch)  # every epoch, also without DDP: a new order each epoch
        if log_writer is not None:
            log_writer.set_step(epoch * num_training_steps_per_epoch * args.update_freq)
        train_stats = train_one_epoch(model, criterion, data_loader_train, optimizer, device, epoch, loss_scaler,
                                      args.clip_grad, model_ema, mixup_fn, log_writer=log_writer, args=args)
        save = args.output_dir and args.save_ckpt

        validated = []  # (log-key suffix, model): the model itself and, with --model_ema_eval, its EMA
        val_stats = {}
        if data_loader_val is not None:
            validated.append(('', model))
            if model_ema is not None and args.model_ema_eval:
                validated.append(('_ema', model_ema.ema))
        for suffix, net in validated:
            stats = flat_metrics(evaluate(data_loader_val, net, next(net.parameters()).device, use_amp=args.use_amp,
                                          amp_dtype=args.amp_dtype, class_names=class_names,
                                          tta_flip=args.tta_flip,
                                          tta_sizes=view_sizes(args.input_size, args.tta_scales)))
            value = selection_value(stats, args.best_metric, epoch)
            if is_better(value, best['value' + suffix], args.best_metric):
                best['value' + suffix], best['epoch' + suffix] = value, epoch
                if save:  # checkpoint-best.pth / checkpoint-best-ema.pth
                    utils.save_model(args=args, model=model, model_without_ddp=model_without_ddp,
                                     optimizer=optimizer, loss_scaler=loss_scaler,
                                     epoch='best' + suffix.replace('_', '-'), model_ema=model_ema,
                                     extra=checkpoint_extra(args, class_names, best))
            shown = 'macro_f1' if args.best_metric == 'last' else args.best_metric
            print(f"{'EMA validation' if suffix else 'Validation'} {shown}: {stats[shown]}  "
                  f"(checkpoint-best{suffix.replace('_', '-')}.pth: epoch {best['epoch' + suffix]}, "
                  f"{args.best_metric} {best['value' + suffix]})")
            val_stats[suffix] = {f'test_{k}{suffix}': v for k, v in stats.items()}
            if log_writer is not None:
                log_writer.update(head="perf", step=epoch,
                                  **{k: v for k, v in val_stats[suffix].items() if isinstance(v, (int, float))})
        # upstream's key order: train_*, test_*, epoch, n_parameters, test_*_ema
        log_stats = {**{f'train_{k}': v for k, v in train_stats.items()}, **val_stats.get('', {}),
                     'epoch': epoch, 'n_parameters': n_parameters, **val_stats.get('_ema', {})}

        # log.txt first, then the numbered checkpoint: checkpoint-N.pth on disk implies its log line exists
        if args.output_dir and utils.is_main_process():
            if log_writer is not None:
                log_writer.flush()
            with open(os.path.join(args.output_dir, "log.txt"), mode="a", encoding="utf-8") as f:
                f.write(json.dumps(log_stats) + "\n")
        if save and ((epoch + 1) % args.save_ckpt_freq == 0 or epoch + 1 == args.epochs):
            utils.save_model(args=args, model=model, model_without_ddp=model_without_ddp, optimizer=optimizer,
                             loss_scaler=loss_scaler, epoch=epoch, model_ema=model_ema,
                             extra=checkpoint_extra(args, class_names, best))

    total_time = time.time() - start_time
    print('Training time {}'.format(str(datetime.timedelta(seconds=int(total_time)))))
    final_report(args, model, model_without_ddp, model_ema, device, class_names, loaders)


def checkpoint_extra(args, class_names, best):
    extra = {'class_names': list(class_names), 'best_metric': args.best_metric}
    extra.update({f'best_{k}': v for k, v in best.items()})
    return extra


def final_report(args, model, model_without_ddp, model_ema, device, class_names, loaders):
    """Evaluates checkpoint-best.pth (else the final weights) on val and test and writes the reports."""
    if loaders['val'][0] is None and loaders['test'][0] is None:
        return
    if utils.is_dist_avail_and_initialized():
        torch.distributed.barrier()  # rank 0 has finished writing checkpoint-best.pth
    best_path = Path(args.output_dir) / 'checkpoint-best.pth' if args.output_dir else None
    if best_path is not None and best_path.exists():
        checkpoint = utils.load_checkpoint(best_path)
        model_without_ddp.load_state_dict(checkpoint['model'])
        name, epoch = str(best_path), checkpoint.get('best_epoch')
    else:
        print("No checkpoint-best.pth: reporting the weights after the last epoch")
        name, epoch = 'final weights (not saved as best)', args.epochs - 1
    fitted = report_checkpoint(args, model, device, class_names, loaders, name, epoch)
    if fitted is not None and best_path is not None and best_path.exists() and utils.is_main_process():
        checkpoint['calibration'] = fitted  # scripts/predict.py and --eval read it from here
        utils.atomic_save(checkpoint, best_path)

    ema_path = Path(args.output_dir) / 'checkpoint-best-ema.pth' if args.output_dir else None
    if model_ema is not None and args.model_ema_eval and ema_path is not None and ema_path.exists():
        checkpoint = utils.load_checkpoint(ema_path)
        model_without_ddp.load_state_dict(checkpoint['model_ema'])
        report_checkpoint(args, model, device, class_names, {'test': loaders['test']}, str(ema_path),
                          checkpoint.get('best_epoch_ema'), suffix='_ema')


if __name__ == '__main__':
    parser = argparse.ArgumentParser('FCMAE fine-tuning', parents=[get_args_parser()])
    args = parser.parse_args()
    run_trainer(main, args)
