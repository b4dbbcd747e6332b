"""Datasets and transforms for fine-tuning: upstream's CIFAR / IMNET / image_folder modes plus RHEED.

RHEED mode reads a split root `<data_path>/{train,val,test}/<class>/...` (scripts/split_dataset_simple.py).
Every image mode uses the project's loader (rheed.imageio.make_loader), which handles 8/16-bit PNG/TIFF
frames and returns RGB, and scans all files before training (`--skip_corrupt`).
"""
import os

from torchvision import datasets, transforms

import timm_compat  # noqa: F401
from timm.data import create_transform
from timm.data.constants import (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN,
                                 IMAGENET_INCEPTION_STD)

import utils
from rheed import augment
from rheed.errors import UserError
from rheed.frame_cache import cache_short_side, cached_pipeline
from rheed.tta import eval_input_size
from rheed.imageio import is_image_file, make_loader, verify_files

DATA_SETS = ('CIFAR', 'IMNET', 'image_folder', 'RHEED')


def class_folders(root) -> list[str]:
    """Sorted class sub-folder names of an ImageFolder-style root (hidden folders ignored)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith('.'))


def dataset_root(is_train: bool, args, split: str | None = None) -> str:
    """The folder read for a split ('train', 'val' or 'test') in the image modes."""
    split = split or ('train' if is_train else 'val')
    if split == 'test' and getattr(args, 'test_data_path', None):  # the added flag wins in every image mode
        return args.test_data_path
    if args.data_set == 'CIFAR':
        return args.data_path
    if args.data_set == 'IMNET':
        return os.path.join(args.data_path, 'train' if split == 'train' else 'val')
    if args.data_set == 'image_folder':
        if split == 'train':
            return args.data_path
        if split == 'test':
            return args.test_data_path
        return args.eval_data_path
    # RHEED
    if split == 'val' and args.eval_data_path:
        return args.eval_data_path
    return os.path.join(args.data_path, split)


def default_test_path(args) -> str | None:
    """--test_data_path, or <data_path>/test in RHEED mode when that folder exists."""
    if getattr(args, 'test_data_path', None):
        return args.test_data_path
    if args.data_set == 'RHEED':
        path = os.path.join(args.data_path, 'test')
        return path if os.path.isdir(path) else None
    return None


class ImageFolder(datasets.DatasetFolder):
    """torchvision's DatasetFolder with the project's image extensions; hidden folders are not classes."""

    def find_classes(self, directory):
        classes = class_folders(directory)
        return classes, {c: i for i, c in enumerate(classes)}


def image_folder(root: str, transform, args, training: bool = True, listing_only: bool = False) -> ImageFolder:
    """ImageFolder over root/<class>/** with the project loader; corrupt files checked up front. With
    --frame_cache, training frames are cached at the cache's short side, evaluation frames exactly as the
    evaluation transform resizes them (the same tensors as reading the files). `listing_only` skips both."""
    if not root or not os.path.isdir(root):
        raise UserError(f"data folder not found: {root}")
    if not class_folders(root):
        raise UserError(f"{root} has no class sub-folders (expected {root}/<class>/<image files>)")
    crop = getattr(args, 'frame_crop', None)
    try:
        dataset = ImageFolder(root, loader=make_loader(args.bit_scaling, max_value=getattr(args, 'bit_max', None),
                                                       crop=crop),
                              is_valid_file=is_image_file, transform=transform)
    except FileNotFoundError as e:
        raise UserError(f"{root}: {e}") from None
    if listing_only:
        return dataset
    # decoded once, on rank 0: every rank decoding every frame multiplies the start-up time by the GPU count
    good, bad = utils.on_main_process(verify_files, [path for path, _ in dataset.samples],
                                      skip_corrupt=args.skip_corrupt, crop=crop)
    if bad:
        keep = set(good)
        print(f"Skipping {len(bad)} unreadable image(s) in {root}")
        dataset.samples = [s for s in dataset.samples if s[0] in keep]
        dataset.targets = [t for _, t in dataset.samples]
        dataset.imgs = dataset.samples
        if not dataset.samples:
            raise UserError(f"no readable images left in {root}")
    if getattr(args, 'frame_cache', False):
        cache_dir = frame_cache_dir(args, root)
        settings = {'root': os.path.abspath(root), 'bit_scaling': args.bit_scaling,
                    'bit_max': getattr(args, 'bit_max', None), 'frame_crop': crop}
        short_side = cache_short_side(getattr(args, 'frame_cache_size', None), args.input_size) if training else 0
        dataset.loader, dataset.transform = cached_pipeline([p for p, _ in dataset.samples], dataset.loader,
                                                            dataset.transform, cache_dir, settings,
                                                            utils.on_main_process, short_side,
                                                            seed=getattr(args, 'seed', 0))
    return dataset


def frame_cache_dir(args, root: str) -> str:
    """--frame_cache_dir (default <output_dir>/frame_cache), one sub-folder per data folder."""
    base = getattr(args, 'frame_cache_dir', '') or os.path.join(args.output_dir or '.', 'frame_cache')
    name = os.path.abspath(root).strip(os.sep).replace(os.sep, '_')[-80:]
    return os.path.join(base, name)


def build_dataset(is_train: bool, args, split: str | None = None, listing_only: bool = False):
    """Returns (dataset, nb_classes). `split` selects 'test' (default: 'train' or 'val' from is_train).

    Image datasets carry `classes` and `samples` [(path, label)]. The class folders of val/test must equal
    those of train, and `--nb_classes` (when given) must equal their number. `listing_only`: the files are
    listed but neither checked nor cached (the training set of an --eval run only gives its classes).
    """
    split = split or ('train' if is_train else 'val')
    transform = build_transform(split == 'train', args)

    print("Transform = ")
    if isinstance(transform, tuple):
        for trans in transform:
            print(" - - - - - - - - - - ")
            for t in trans.transforms:
                print(t)
    else:
        for t in transform.transforms:
            print(t)
    print("---------------------------")

    if args.data_set == 'CIFAR':
        if split == 'test':
            raise UserError("CIFAR has no separate test split here; its val split is CIFAR-100's test set")
        try:
            dataset = datasets.CIFAR100(args.data_path, train=split == 'train', transform=transform, download=False)
        except RuntimeError:
            raise UserError(f"CIFAR-100 not found in {args.data_path} (expected cifar-100-python/); this project "
                            f"never downloads data: fetch it on a connected machine and copy it there") from None
        nb_classes = 100
    elif args.data_set in ('IMNET', 'image_folder', 'RHEED'):
        if not os.path.isdir(args.data_path):
            raise UserError(f"--data_path not found: {args.data_path}")
        if args.data_set == 'RHEED' and not os.path.isdir(os.path.join(args.data_path, 'train')):
            raise UserError(f"{args.data_path} is not a split root: {os.path.join(args.data_path, 'train')} "
                            f"not found (make one with scripts/split_dataset_simple.py)")
        root = dataset_root(split == 'train', args, split)
        if args.data_set == 'image_folder' and split != 'train' and not root:
            flag = '--test_data_path' if split == 'test' else '--eval_data_path'
            raise UserError(f"--data_set image_folder needs {flag} for the {split} set")
        if split != 'train' and root and os.path.isdir(root):
            train_root = dataset_root(True, args, 'train')
            if os.path.isdir(train_root) and class_folders(train_root) != class_folders(root):
                raise UserError(f"class folders differ: {train_root} has {class_folders(train_root)}, "
                                f"{root} has {class_folders(root)}")
        if split == 'train' and os.path.isdir(root) and len(class_folders(root)) == 1:
            raise UserError(f"{root} has a single class folder ({class_folders(root)[0]}); a classifier needs "
                            f"at least two (e.g. smooth/ and rough/)")
        dataset = image_folder(root, transform, args, training=split == 'train', listing_only=listing_only)
        nb_classes = len(dataset.classes)
        if args.nb_classes is not None and args.nb_classes != nb_classes:
            raise UserError(f"--nb_classes {args.nb_classes} does not match the {nb_classes} class folders "
                            f"in {root}: {dataset.classes}")
    else:
        raise UserError(f"unknown --data_set {args.data_set}; choose from {', '.join(DATA_SETS)}")
    print(f"Number of the class = {nb_classes}")
    return dataset, nb_classes


def build_transform(is_train: bool, args):
    """Upstream's transform: timm create_transform for training, resize + center crop for evaluation.

    With `--aug_mode rheed` the RHEED transforms of rheed.augment instead (geometry-keeping crops, flips,
    photometric jitter; the whole frame resized for evaluation, to the largest --tta_scales view when set).

    Training flips horizontally only (a RHEED pattern mirrored left-right is still physical; timm never
    flips vertically).
    """
    resize_im = args.input_size > 32
    imagenet_default_mean_and_std = args.imagenet_default_mean_and_std
    mean = IMAGENET_DEFAULT_MEAN if imagenet_default_mean_and_std else IMAGENET_INCEPTION_MEAN
    std = IMAGENET_DEFAULT_STD if imagenet_default_mean_and_std else IMAGENET_INCEPTION_STD

    if getattr(args, 'aug_mode', 'upstream') == 'rheed':
        background = getattr(args, 'subtract_background', False)
        mode = getattr(args, 'background_mode', 'global')
        despeckle = getattr(args, 'despeckle', False)
        pad_aspect = getattr(args, 'pad_aspect', 0.0)
        gamma = getattr(args, 'pattern_gamma', 1.0)
        if is_train:
            return augment.rheed_train_transform(args.input_size, mean, std, tuple(args.crop_scale), background, mode,
                                                 camera=getattr(args, 'camera_aug', False), despeckle=despeckle,
                                                 crop_shift=getattr(args, 'crop_shift', 0.0), pad_aspect=pad_aspect,
                                                 pattern_gamma=gamma)
        size = eval_input_size(args.input_size, getattr(args, 'tta_scales', None))
        return augment.rheed_eval_transform(size, mean, std, background, mode, despeckle, pad_aspect, gamma)

    if is_train:
        transform = create_transform(
            input_size=args.input_size,
            is_training=True,
            color_jitter=args.color_jitter,
            auto_augment=args.aa,
            interpolation=args.train_interpolation,
            scale=tuple(getattr(args, 'crop_scale', (0.08, 1.0))),
            re_prob=args.reprob,
            re_mode=args.remode,
            re_count=args.recount,
            mean=mean,
            std=std,
        )
        if not resize_im:
            transform.transforms[0] = transforms.RandomCrop(args.input_size, padding=4)
        return transform

    t = []
    if resize_im:
        if args.input_size >= 384:
            t.append(transforms.Resize((args.input_size, args.input_size),
                                       interpolation=transforms.InterpolationMode.BICUBIC))
            print(f"Warping {args.input_size} size input images...")
        else:
            if args.crop_pct is None:
                args.crop_pct = 224 / 256
            size = int(args.input_size / args.crop_pct)
            t.append(transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC))
            t.append(transforms.CenterCrop(args.input_size))
    t.append(transforms.ToTensor())
    t.append(transforms.Normalize(mean, std))
    return transforms.Compose(t)
