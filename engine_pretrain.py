"""One epoch of FCMAE pre-training."""
import math
from typing import Iterable

import torch

import utils
from rheed.errors import UserError


def train_one_epoch(model: torch.nn.Module, data_loader: Iterable, optimizer: torch.optim.Optimizer,
                    device: torch.device, epoch: int, loss_scaler, log_writer=None, args=None):
    model.train(True)
    metric_logger = utils.MetricLogger(delimiter="  ")
    metric_logger.add_meter('lr', utils.SmoothedValue(window_size=1, fmt='{value:.6f}'))
    header = f'Epoch: [{epoch}]'
    print_freq = 20
    update_freq = args.update_freq
    num_iters = len(data_loader)

    optimizer.zero_grad()
    for data_iter_step, (samples, labels) in enumerate(metric_logger.log_every(data_loader, print_freq, header)):
        # per-iteration schedule on the fractional epoch
        if data_iter_step % update_freq == 0:
            utils.adjust_learning_rate(optimizer, data_iter_step / num_iters + epoch, args)

        samples = samples.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with utils.amp_autocast(device, args.use_amp, args.amp_dtype):
            loss, _, _ = model(samples, labels, mask_ratio=args.mask_ratio)

        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise UserError(f"loss is {loss_value} at epoch {epoch}, iteration {data_iter_step}; stopping "
                            f"training (try a lower --blr/--lr, or --amp_dtype bfloat16)")

        loss = loss / update_freq
        update_grad = (data_iter_step + 1) % update_freq == 0
        loss_scaler(loss, optimizer, clip_grad=args.clip_grad, parameters=model.parameters(),
                    update_grad=update_grad)
        if update_grad:
            optimizer.zero_grad()
        if device.type == 'cuda':
            torch.cuda.synchronize()

        metric_logger.update(loss=loss_value)
        lr = optimizer.param_groups[0]["lr"]
        metric_logger.update(lr=lr)

        loss_value_reduce = utils.all_reduce_mean(loss_value)
        if log_writer is not None and update_grad:
            # x-axis in 1/1000 epochs, so curves of runs with different batch sizes line up
            epoch_1000x = int((data_iter_step / num_iters + epoch) * 1000)
            log_writer.update(train_loss=loss_value_reduce, head="loss", step=epoch_1000x)
            log_writer.update(lr=lr, head="opt", step=epoch_1000x)

    metric_logger.synchronize_between_processes()
    print("Averaged stats:", metric_logger)
    return {k: meter.global_avg for k, meter in metric_logger.meters.items()}
