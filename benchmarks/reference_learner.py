"""Reference learner: a plain training loop to check that a split is learnable at a CPU budget.

Trains torchvision's resnet18 (or one of our ConvNeXt-V2 models, for comparison in the same loop)
from scratch on a split root `<data>/{train,val,test}/<class>/` and prints test macro-F1. The loop is
deliberately ordinary: AdamW with a one-cycle schedule, random resized crops of area 0.5-1 and
horizontal flips, class-weighted cross-entropy, the last epoch's weights evaluated on the test split
(the whole frame resized to a square). It uses none of main_finetune.py's machinery, so a gap between
the two points at the recipe, not at the data.

    python benchmarks/reference_learner.py --data data_rheed_split --arch resnet18 --seeds 0 1 2
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import datasets  # noqa: E402
import models.convnextv2 as convnextv2  # noqa: E402
from rheed.imageio import is_image_file, make_loader  # noqa: E402
from rheed.metrics import compute_metrics  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_split(root: str) -> tuple[list, list, list]:
    folder = datasets.ImageFolder(root, loader=make_loader('percentile'), is_valid_file=is_image_file)
    images = [folder.loader(path) for path, _ in folder.samples]
    return images, list(folder.targets), list(folder.classes)


def build_model(arch: str, num_classes: int) -> torch.nn.Module:
    if arch in convnextv2.MODEL_NAMES:
        return convnextv2.__dict__[arch](num_classes=num_classes)
    return torchvision.models.__dict__[arch](weights=None, num_classes=num_classes)


def batches(images, targets, transform, batch_size, shuffle, generator=None):
    order = torch.randperm(len(images), generator=generator) if shuffle else torch.arange(len(images))
    stop = len(images) - len(images) % batch_size if shuffle else len(images)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size].tolist()
        yield torch.stack([transform(images[i]) for i in idx]), torch.tensor([targets[i] for i in idx])


def run(args, seed: int) -> dict:
    torch.manual_seed(seed)
    train_x, train_y, classes = load_split(os.path.join(args.data, 'train'))
    test_x, test_y, _ = load_split(os.path.join(args.data, 'test'))
    size = args.input_size
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.5, 1.0)), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    test_tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                  transforms.Normalize(MEAN, STD)])
    model = build_model(args.arch, len(classes))
    counts = np.bincount(train_y, minlength=len(classes))
    weight = torch.tensor(counts.sum() / (len(classes) * counts), dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * (len(train_x) // args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.time()
    for _ in range(args.epochs):
        model.train()
        for x, y in batches(train_x, train_y, train_tf, args.batch_size, True, generator):
            loss = F.cross_entropy(model(x), y, weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(x).softmax(-1) for x, _ in batches(test_x, test_y, test_tf, 64, False)])
    metrics = compute_metrics(test_y, probs.numpy(), classes)
    return {'seed': seed, 'macro_f1': metrics['macro_f1'], 'accuracy': metrics['accuracy'],
            'last_loss': loss.item(), 'seconds': round(time.time() - start, 1)}


def main():
    parser = argparse.ArgumentParser(description='Train a plain reference model on a split and report test macro-F1')
    parser.add_argument('--data', required=True, help='split root with train/ and test/ class folders')
    parser.add_argument('--arch', default='resnet18', help='torchvision model name or a convnextv2_* name')
    parser.add_argument('--input_size', default=128, type=int)
    parser.add_argument('--epochs', default=15, type=int)
    parser.add_argument('--batch_size', default=16, type=int)
    parser.add_argument('--lr', default=1e-3, type=float, help='peak lr of the one-cycle schedule')
    parser.add_argument('--weight_decay', default=0.05, type=float)
    parser.add_argument('--seeds', default=[0], type=int, nargs='+')
    parser.add_argument('--threads', default=2, type=int)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [run(args, seed) for seed in args.seeds]
    for r in results:
        print(json.dumps(r))
    f1 = np.array([r['macro_f1'] for r in results])
    print(f"{args.arch}: test macro-F1 {f1.mean():.3f} ± {f1.std(ddof=1) if len(f1) > 1 else 0:.3f} "
          f"over {len(f1)} seed(s)")


if __name__ == '__main__':
    main()
