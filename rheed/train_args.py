"""Command-line options that main_pretrain.py and main_finetune.py add to upstream's, defined once."""
import argparse
import math

from rheed.augment import BACKGROUND_MODES
from rheed.errors import UserError
from rheed.imageio import SCALING_MODES
from utils import str2bool


def aspect_ratio(text: str) -> float:
    """argparse type: an aspect ratio written W:H (4:3) or as a number (1.333); 0 means off."""
    width, colon, height = text.partition(':')
    try:
        value = float(width) / float(height) if colon else float(text)
    except (ValueError, ZeroDivisionError):
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not an aspect ratio such as 4:3")
    return value


def add_frame_args(parser: argparse.ArgumentParser) -> None:
    """How frames are read: bit depth, unreadable files, background subtraction and the frame cache."""
    parser.add_argument('--bit_scaling', default='percentile', choices=list(SCALING_MODES),
                        help='how 16-bit and float frames become 8 bit (rheed.imageio; default: percentile)')
    parser.add_argument('--bit_max', default=None, type=float,
                        help='white level for --bit_scaling fixed (e.g. 4095 for 12-bit frames)')
    parser.add_argument('--frame_crop', type=int, nargs=4, default=None, metavar=('LEFT', 'TOP', 'RIGHT', 'BOTTOM'),
                        help='use only this pixel box of every frame (pixels of the file, right and bottom '
                             'exclusive), cut out before bit scaling and background subtraction: leaves out an '
                             'overlay, a time stamp or the sample holder; stored in the checkpoint, so predict.py '
                             'crops the same way (default: the whole frame)')
    parser.add_argument('--skip_corrupt', type=str2bool, default=False,
                        help='leave out unreadable images instead of stopping (default: False)')
    parser.add_argument('--subtract_background', type=str2bool, default=False,
                        help="set each whole frame's diffuse background to zero before cropping and scale the "
                             'pattern, in place of the mean/std normalisation (rheed.augment.SubtractBackground; '
                             'fine-tuning needs --aug_mode rheed); pre-train with it when fine-tuning will use it')
    parser.add_argument('--background_mode', default='global', choices=BACKGROUND_MODES,
                        help='with --subtract_background: global = one level per frame; local = first remove the '
                             'slowly varying background (glow, vignetting, screen edge) by a grey opening; auto = '
                             'global, or local for a frame where the global level leaves under 0.3 %% of the pixels; '
                             'adaptive = subtract a smooth background surface (glow, vignetting, dark screen surround) '
                             'and take the level of what is left over the lit screen (rheed.augment.adaptive_pattern; the RHEED launchers use it)')
    parser.add_argument('--pattern_gamma', type=float, default=1.0,
                        help='with --subtract_background: raise the scaled pattern (0-1) to this power; below 1 '
                             'lifts faint spots and lines against the bright specular spot and streaks (0.5 = square '
                             'root; 1 = linear, as before; stored in the checkpoint)')
    parser.add_argument('--despeckle', type=str2bool, default=False,
                        help='clip every pixel to the brightest of its 8 neighbours before background subtraction: '
                             "removes the camera's hot (stuck) pixels, which would otherwise look like sharp spots "
                             '(rheed.augment.Despeckle; the RHEED launchers use it; stored in the checkpoint)')
    parser.add_argument('--frame_cache', type=str2bool, default=False,
                        help='decode (and background-subtract) every frame once into a memory-mapped cache '
                             'shared by the DataLoader workers and processes; with --frame_cache_size 0 training is identical without it')
    parser.add_argument('--frame_cache_dir', default='',
                        help='where the frame cache lives (default: <output_dir>/frame_cache)')
    parser.add_argument('--frame_cache_size', type=int, default=None,
                        help='shorter side, in pixels, of the frames stored in the frame cache (background '
                             'subtraction runs before, at full resolution); default twice --input_size; '
                             '0 stores them as loaded')


def check_frame_args(args: argparse.Namespace) -> None:
    """UserError for frame options that cannot work as given."""
    gamma = args.pattern_gamma
    if not (math.isfinite(gamma) and gamma > 0):
        raise UserError(f"--pattern_gamma {gamma}: needs a power above 0 (1 = linear)")
    if gamma != 1.0 and not args.subtract_background:
        raise UserError(f"--pattern_gamma {gamma} needs --subtract_background true (it shapes the background-free pattern)")


def add_run_args(parser: argparse.ArgumentParser, amp_dtype: str) -> None:
    """Output-folder ownership and the speed options (channels_last, compile, fused optimizer, mixed precision)."""
    parser.add_argument('--overwrite', type=str2bool, default=False,
                        help='replace the files of another run in --output_dir (default: refuse and name its owner)')
    parser.add_argument('--channels_last', type=str2bool, default=False,
                        help='channels_last memory format for the model (faster convolutions on recent GPUs)')
    parser.add_argument('--compile', type=str2bool, default=False,
                        help='torch.compile the model (first steps are slow while it compiles)')
    parser.add_argument('--fused_optimizer', type=str2bool, default=False,
                        help='use the fused (single-kernel) implementation of Adam/AdamW where torch has one '
                             '(same update; fewer kernel launches on the GPU)')
    parser.add_argument('--use_amp', type=str2bool, default=False,
                        help='mixed-precision autocast on CUDA (ignored on the CPU)')
    parser.add_argument('--amp_dtype', default=amp_dtype, choices=('float16', 'bfloat16'),
                        help=f'autocast dtype with --use_amp; float16 adds loss scaling (default: {amp_dtype})')
