"""Images per second of one training step (forward, backward, AdamW step): FCMAE vs. the classifier.

    python benchmarks/bench_train_step.py --model convnextv2_atto --input_size 224 --batch_size 8
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import models.convnextv2 as convnextv2  # noqa: E402
import models.fcmae as fcmae  # noqa: E402


def time_steps(step, warmup: int, repeats: int) -> list:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnextv2_atto", choices=fcmae.MODEL_NAMES)
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--mask_ratio", type=float, default=0.6)
    parser.add_argument("--nb_classes", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    imgs = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=device)
    labels = torch.randint(0, args.nb_classes, (args.batch_size,), device=device)

    pretrain = fcmae.__dict__[args.model](norm_pix_loss=True).to(device)
    pretrain_opt = torch.optim.AdamW(pretrain.parameters(), lr=1e-4)

    def pretrain_step():
        loss, _, _ = pretrain(imgs, labels, mask_ratio=args.mask_ratio)
        pretrain_opt.zero_grad()
        loss.backward()
        pretrain_opt.step()

    classifier = convnextv2.__dict__[args.model](num_classes=args.nb_classes, drop_path_rate=0.1).to(device)
    classifier_opt = torch.optim.AdamW(classifier.parameters(), lr=1e-4)

    def classifier_step():
        loss = F.cross_entropy(classifier(imgs), labels)
        classifier_opt.zero_grad()
        loss.backward()
        classifier_opt.step()

    print(f"model {args.model}, {args.input_size} px, batch {args.batch_size}, mask ratio {args.mask_ratio}, "
          f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'step':<22}{'median s/step':>14}{'images/s':>10}{'best images/s':>15}")
    for name, step in (("FCMAE pre-training", pretrain_step), ("classifier fine-tune", classifier_step)):
        times = sorted(time_steps(step, args.warmup, args.repeats))
        median = times[len(times) // 2]
        print(f"{name:<22}{median:>14.3f}{args.batch_size / median:>10.1f}{args.batch_size / times[0]:>15.1f}")


if __name__ == "__main__":
    main()
