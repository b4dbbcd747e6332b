"""Fine-tuning loop (train_one_epoch) and evaluation with per-class metrics (evaluate)."""
import math
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import timm_compat  # noqa: F401
from timm.data import Mixup
from timm.utils import ModelEma

import utils
from rheed.errors import UserError
from rheed.metrics import compute_metrics, gather_predictions
from rheed.tta import tta_logits


def train_one_epoch(model: torch.nn.Module, criterion: torch.nn.Module, data_loader: Iterable,
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int, loss_scaler,
                    max_norm: Optional[float] = None, model_ema: Optional[ModelEma] = None,
                    mixup_fn: Optional[Mixup] = None, log_writer=None, args=None):
    """One epoch; the optimizer steps every `args.update_freq` iterations. Returns {meter: global average}.

    The same gradient step serves the AMP and float32 paths, so `max_norm` (--clip_grad) clips in both.
    """
    model.train(True)
    metric_logger = utils.MetricLogger(delimiter="  ")
    metric_logger.add_meter('lr', utils.SmoothedValue(window_size=1, fmt='{value:.6f}'))
    header = f'Epoch: [{epoch}]'
    print_freq = 20
    update_freq = args.update_freq
    use_amp = args.use_amp and device.type == 'cuda'

    optimizer.zero_grad()
    for data_iter_step, (samples, targets) in enumerate(metric_logger.log_every(data_loader, print_freq, header)):
        if data_iter_step % update_freq == 0:
            utils.adjust_learning_rate(optimizer, data_iter_step / len(data_loader) + epoch, args)

        samples = samples.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if mixup_fn is not None:
            samples, targets = mixup_fn(samples, targets)

        with utils.amp_autocast(device, enabled=use_amp, dtype=args.amp_dtype):
            output = model(samples)
            loss = criterion(output, targets)

        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise UserError(f"loss is {loss_value} at epoch {epoch}, iteration {data_iter_step}; stopping "
                            f"training (try a smaller --blr/--lr, --clip_grad, or --amp_dtype bfloat16)")

        loss = loss / update_freq
        update_grad = (data_iter_step + 1) % update_freq == 0
        grad_norm = loss_scaler(loss, optimizer, clip_grad=max_norm, parameters=model.parameters(),
                                create_graph=False, update_grad=update_grad)
        if update_grad:
            optimizer.zero_grad()
            if model_ema is not None:
                model_ema.update(model)

        class_acc = None
        if mixup_fn is None:
            class_acc = (output.argmax(dim=-1) == targets).float().mean().item()

        lrs = [group['lr'] for group in optimizer.param_groups]
        weight_decay_value = None
        for group in optimizer.param_groups:
            if group['weight_decay'] > 0:
                weight_decay_value = group['weight_decay']
        grad_norm = None if grad_norm is None else float(grad_norm)

        metric_logger.update(loss=loss_value)
        metric_logger.update(class_acc=class_acc)
        metric_logger.update(lr=max(lrs))
        metric_logger.update(min_lr=min(lrs))
        metric_logger.update(weight_decay=weight_decay_value)
        metric_logger.update(grad_norm=grad_norm)

        if log_writer is not None:
            log_writer.update(loss=loss_value, head="loss")
            log_writer.update(class_acc=class_acc, head="loss")
            log_writer.update(lr=max(lrs), head="opt")
            log_writer.update(min_lr=min(lrs), head="opt")
            log_writer.update(weight_decay=weight_decay_value, head="opt")
            log_writer.update(grad_norm=grad_norm, head="opt")
            log_writer.set_step()

    metric_logger.synchronize_between_processes()
    print("Averaged stats:", metric_logger)
    return {k: meter.global_avg for k, meter in metric_logger.meters.items()}


@torch.no_grad()
def evaluate(data_loader, model, device, use_amp=False, amp_dtype='float16', class_names: Sequence[str] = None,
             tta_flip: bool = False, tta_sizes: Sequence[int] | None = None):
    """Loss, top-1 (and top-5 with more than 5 classes) and rheed.metrics over the whole dataset.

    Predictions of all processes are gathered and the sampler's padded duplicates dropped (by dataset
    index), so each sample counts once. The loss is the plain (unweighted) cross-entropy averaged over
    samples. Returns a dict with `loss`, `acc1`, `acc5` (percent), `metrics` (compute_metrics) and the
    per-sample arrays `indices`, `labels`, `probs` (sorted by dataset index). `tta_flip`: logits averaged
    over the four flips of each image; `tta_sizes`: over views of these sizes (rheed.tta).
    """
    model.eval()
    use_amp = use_amp and device.type == 'cuda'
    order = torch.tensor(list(iter(data_loader.sampler)), dtype=torch.long)
    metric_logger = utils.MetricLogger(delimiter="  ")

    probs, labels, losses = [], [], []
    for batch in metric_logger.log_every(data_loader, 10, 'Test:'):
        images = batch[0].to(device, non_blocking=True)
        target = batch[-1].to(device, non_blocking=True)
        def logits(x):
            with utils.amp_autocast(device, enabled=use_amp, dtype=amp_dtype):
                out = model(x)
            return out['logits'] if isinstance(out, dict) else out

        output = tta_logits(logits, images, tta_sizes, tta_flip)
        losses.append(F.cross_entropy(output, target, reduction='none').cpu())
        probs.append(output.softmax(dim=-1).cpu())
        labels.append(target.cpu())

    num_classes = len(class_names) if class_names is not None else None
    probs = torch.cat(probs) if probs else torch.zeros(0, num_classes or 1)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    losses = torch.cat(losses) if losses else torch.zeros(0)
    indices, probs, labels, losses = gather_predictions(order[:len(labels)], probs, labels, losses)

    num_classes = probs.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    metrics = compute_metrics(labels, probs, class_names)
    stats = {'loss': float(losses.mean()) if len(losses) else float('nan'), 'acc1': 100.0 * metrics['accuracy']}
    if num_classes > 5:
        top5 = np.argsort(-probs, axis=1)[:, :5]
        stats['acc5'] = 100.0 * float(np.mean([y in row for y, row in zip(labels, top5)]))
    acc5_text = f" Acc@5 {stats['acc5']:.3f}" if 'acc5' in stats else ''
    print(f"* Acc@1 {stats['acc1']:.3f}{acc5_text} loss {stats['loss']:.3f} macro-F1 {metrics['macro_f1']:.4f} "
          f"balanced acc {metrics['balanced_accuracy']:.4f} ({metrics['num_samples']} samples)")
    stats.update(metrics=metrics, indices=indices, labels=labels, probs=probs)
    return stats


def flat_metrics(stats: dict) -> dict:
    """Scalar/list entries of an evaluate() result for log.txt (without prefix): loss, acc1, [acc5],
    accuracy, macro_f1, balanced_accuracy, [roc_auc], precision_<c>, recall_<c>, f1_<c>, confusion_matrix."""
    metrics = stats['metrics']
    out = {'loss': stats['loss'], 'acc1': stats['acc1']}
    if 'acc5' in stats:
        out['acc5'] = stats['acc5']
    out.update(accuracy=metrics['accuracy'], macro_f1=metrics['macro_f1'],
               balanced_accuracy=metrics['balanced_accuracy'])
    if 'roc_auc' in metrics:
        out['roc_auc'] = metrics['roc_auc']
    for name, values in metrics['per_class'].items():
        out[f'precision_{name}'] = values['precision']
        out[f'recall_{name}'] = values['recall']
        out[f'f1_{name}'] = values['f1']
    out['confusion_matrix'] = metrics['confusion_matrix']
    return out
