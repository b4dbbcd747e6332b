import argparse
import math
import os
import random
import socket
import sys

import numpy as np
import pytest
import torch

import utils
from conftest import run_cli
from rheed.errors import UserError


def ckpt_args(output_dir, **kw):
    base = dict(output_dir=str(output_dir), save_ckpt_num=3, save_ckpt_freq=1, auto_resume=True, resume='',
                model='tiny_linear', eval=False, start_epoch=0, model_ema=False)
    base.update(kw)
    return argparse.Namespace(**base)


def make_state(seed=0, out_features=2):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, out_features)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scaler = utils.NativeScalerWithGradNormCount('cpu', enabled=False)
    return model, optimizer, scaler


def save(args, epoch, seed=0):
    model, optimizer, scaler = make_state(seed)
    return utils.save_model(args, epoch, model, model, optimizer, scaler), model


# --- str2bool -----------------------------------------------------------------------------------

@pytest.mark.parametrize('value,expected', [('yes', True), ('TRUE', True), ('t', True), ('Y', True), ('1', True),
                                            ('no', False), ('False', False), ('f', False), ('n', False),
                                            ('0', False), (True, True), (False, False)])
def test_str2bool(value, expected):
    assert utils.str2bool(value) is expected


def test_str2bool_error_is_argparse_error():
    with pytest.raises(argparse.ArgumentTypeError, match='maybe'):
        utils.str2bool('maybe')
    parser = argparse.ArgumentParser()
    parser.add_argument('--eval', type=utils.str2bool, default=False)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(['--eval', 'maybe'])
    assert exc.value.code == 2


# --- learning-rate schedule ------------------------------------------------------------------------

def test_adjust_learning_rate_warmup_and_cosine():
    args = argparse.Namespace(lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{'params': [model.weight], 'lr_scale': 0.5}, {'params': [model.bias]}], lr=0.0)
    expected = {0.0: 0.0, 1.0: 0.5, 1.5: 0.75, 2.0: 1.0, 6.0: 0.55, 10.0: 0.1,
                4.0: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.25))}
    for epoch, lr in expected.items():
        assert utils.adjust_learning_rate(optimizer, epoch, args) == pytest.approx(lr)
        assert optimizer.param_groups[0]['lr'] == pytest.approx(lr * 0.5)  # lr_scale, min_lr scaled too
        assert optimizer.param_groups[1]['lr'] == pytest.approx(lr)


def test_cosine_scheduler_shape_and_ends():
    sched = utils.cosine_scheduler(1.0, 0.0, epochs=4, niter_per_ep=5, warmup_epochs=1)
    assert len(sched) == 20
    assert sched[0] == 0.0 and sched[4] == pytest.approx(1.0) and sched[5] == pytest.approx(1.0)
    assert sched[-1] < 0.02


# --- checkpoints ---------------------------------------------------------------------------------------

def test_save_model_rotation_no_temp_and_plain_args(tmp_path):
    args = ckpt_args(tmp_path, device=torch.device('cpu'), some_path=tmp_path, betas=(0.9, 0.95))
    for epoch in range(6):
        save(args, epoch)
    save(args, 'best')
    assert sorted(os.listdir(tmp_path)) == ['checkpoint-3.pth', 'checkpoint-4.pth', 'checkpoint-5.pth',
                                            'checkpoint-best.pth']
    ckpt = torch.load(tmp_path / 'checkpoint-5.pth')  # torch's default weights_only=True
    assert isinstance(ckpt['args'], dict)
    assert ckpt['args']['device'] == 'cpu' and ckpt['args']['some_path'] == str(tmp_path)
    assert ckpt['args']['betas'] == [0.9, 0.95]
    assert ckpt['epoch'] == 5 and ckpt['scaler'] == {}
    assert set(ckpt) >= {'model', 'optimizer', 'epoch', 'scaler', 'args'}
    assert torch.load(tmp_path / 'checkpoint-best.pth')['epoch'] == 'best'


def test_save_model_extra_keys(tmp_path):
    model, optimizer, scaler = make_state()
    utils.save_model(ckpt_args(tmp_path), 0, model, model, optimizer, scaler, extra={'class_names': ['a', 'b']})
    assert utils.load_checkpoint(tmp_path / 'checkpoint-0.pth')['class_names'] == ['a', 'b']


def test_save_model_is_atomic(tmp_path, monkeypatch):
    args = ckpt_args(tmp_path)
    path, model = save(args, 0)
    good_bytes = path.read_bytes()

    def broken_save(obj, f, *a, **kw):
        f.write(b'PK\x03\x04 half a checkpoint')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError):
        save(args, 0, seed=1)
    assert path.read_bytes() == good_bytes  # the old checkpoint is untouched
    assert os.listdir(tmp_path) == ['checkpoint-0.pth']  # no temp file left behind


def test_load_upstream_checkpoint_with_namespace_args(tmp_path):
    model, optimizer, scaler = make_state()
    path = tmp_path / 'upstream.pth'
    torch.save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(), 'epoch': 7, 'scaler': {},
                'args': argparse.Namespace(model='convnextv2_atto', lr=0.1, input_size=224)}, path)
    with pytest.raises(Exception):
        torch.load(path)  # plain weights_only load refuses the Namespace (UPSTREAM_FACTS 10.3)
    ckpt = utils.load_checkpoint(path)
    assert isinstance(ckpt['args'], argparse.Namespace)
    assert utils.checkpoint_args(ckpt) == {'model': 'convnextv2_atto', 'lr': 0.1, 'input_size': 224}
    assert utils.checkpoint_args({'args': {'model': 'x'}}) == {'model': 'x'}
    assert utils.checkpoint_args({'model': {}}) == {}


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'thing': socket.AddressFamily.AF_INET}, path)
    with pytest.raises(UserError, match='evil.pth'):
        utils.load_checkpoint(path)


def test_load_checkpoint_truncated_and_garbage(tmp_path):
    path, _ = save(ckpt_args(tmp_path), 0)
    data = path.read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match='truncated.pth'):
        utils.load_checkpoint(truncated)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'\x00not a checkpoint' * 10)
    with pytest.raises(UserError, match='garbage.pth'):
        utils.load_checkpoint(garbage)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(UserError, match='empty.pth'):
        utils.load_checkpoint(empty)
    with pytest.raises(UserError, match='not found'):
        utils.load_checkpoint(tmp_path / 'missing.pth')


def test_load_checkpoint_does_not_download():
    with pytest.raises(UserError, match='does not download'):
        utils.load_checkpoint('https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/x.pt')


def test_auto_load_model_skips_corrupt_newest(tmp_path):
    args = ckpt_args(tmp_path)
    save(args, 0, seed=0)
    _, model1 = save(args, 1, seed=1)
    good = (tmp_path / 'checkpoint-1.pth').read_bytes()
    (tmp_path / 'checkpoint-2.pth').write_bytes(good[:100])  # a truncated newest checkpoint
    (tmp_path / 'checkpoint-best.pth').write_bytes(good)  # never picked by auto-resume

    model, optimizer, scaler = make_state(seed=5)
    with pytest.warns(UserWarning, match='checkpoint-2.pth'):
        ckpt = utils.auto_load_model(args, model, model, optimizer, scaler)
    assert args.resume == str(tmp_path / 'checkpoint-1.pth')
    assert args.start_epoch == 2 and ckpt['epoch'] == 1
    assert torch.equal(model.weight, model1.weight)
    assert optimizer.state_dict()['state'][0]['step'] == 1


def test_auto_load_model_nothing_to_resume(tmp_path):
    args = ckpt_args(tmp_path)
    model, optimizer, scaler = make_state()
    assert utils.auto_load_model(args, model, model, optimizer, scaler) is None
    assert args.start_epoch == 0 and args.resume == ''


def test_auto_load_model_other_architecture(tmp_path):
    args = ckpt_args(tmp_path)
    save(args, 0)
    model = torch.nn.Linear(4, 3)  # 3 outputs instead of 2
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(UserError, match='does not fit --model'):
        utils.auto_load_model(args, model, model, optimizer, utils.NativeScalerWithGradNormCount('cpu', False))


def test_resume_from_best_refused_unless_eval(tmp_path):
    args = ckpt_args(tmp_path, auto_resume=False, resume=str(tmp_path / 'checkpoint-best.pth'))
    save(args, 'best')
    model, optimizer, scaler = make_state()
    with pytest.raises(UserError, match='cannot resume'):
        utils.auto_load_model(args, model, model, optimizer, scaler)
    args.eval = True
    assert utils.auto_load_model(args, model, model, optimizer, scaler)['epoch'] == 'best'


def test_rng_state_restored(tmp_path):
    args = ckpt_args(tmp_path)
    save(args, 0)
    # the checkpoint holds the RNG states of the moment it was written
    expected = (torch.rand(3), np.random.rand(), random.random())
    np.random.seed(5)
    random.seed(5)
    model, optimizer, scaler = make_state(seed=7)
    utils.auto_load_model(args, model, model, optimizer, scaler)
    assert torch.equal(torch.rand(3), expected[0])
    assert (np.random.rand(), random.random()) == expected[1:]


# --- gradient step ---------------------------------------------------------------------------------------

def test_scaler_loads_empty_state():
    scaler = utils.NativeScalerWithGradNormCount('cpu', enabled=True)
    assert scaler.enabled is False  # loss scaling is CUDA-only
    scaler.load_state_dict({})
    # an enabled GradScaler raises on {} (UPSTREAM_FACTS 10.3 #14); the wrapper must not
    scaler._scaler = torch.amp.GradScaler('cpu', enabled=True)
    with pytest.raises(RuntimeError):
        torch.amp.GradScaler('cpu', enabled=True).load_state_dict({})
    scaler.load_state_dict({})
    assert scaler.state_dict()['scale'] == 65536.0


def test_clip_grad_without_amp():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = utils.NativeScalerWithGradNormCount('cpu', enabled=False)
    before = [p.detach().clone() for p in model.parameters()]
    loss = (model(torch.randn(16, 8)) * 100).pow(2).mean()
    norm = scaler(loss, optimizer, clip_grad=0.5, parameters=model.parameters())
    assert norm > 0.5  # the pre-clip norm is returned
    after_norm = torch.norm(torch.stack([torch.norm(p.grad) for p in model.parameters()]))
    assert after_norm == pytest.approx(0.5, rel=1e-4)
    step = torch.norm(torch.stack([torch.norm(a - b) for a, b in zip(model.parameters(), before)]))
    assert step.item() == pytest.approx(0.5, rel=1e-4)  # SGD lr 1: the update is the clipped gradient


def test_grad_norm_and_accumulation():
    model = torch.nn.Linear(3, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = utils.NativeScalerWithGradNormCount('cpu', enabled=False)
    weight = model.weight.detach().clone()
    assert scaler(model(torch.ones(1, 3)).sum(), optimizer, update_grad=False) is None
    assert torch.equal(model.weight, weight)  # no step while accumulating
    norm = scaler(model(torch.ones(1, 3)).sum(), optimizer)
    assert norm.item() == pytest.approx(2 * math.sqrt(3))  # two accumulated grads of ones(3)
    assert utils.get_grad_norm_([torch.nn.Parameter(torch.zeros(2))]).item() == 0.0


def test_amp_autocast_noop_on_cpu():
    assert type(utils.amp_autocast('cpu', True, torch.float16)).__name__ == 'nullcontext'
    assert type(utils.amp_autocast('cuda', False, 'bfloat16')).__name__ == 'nullcontext'
    assert utils.get_amp_dtype('float16') is torch.float16
    with pytest.raises(UserError):
        utils.get_amp_dtype('int8')


# --- logging ---------------------------------------------------------------------------------------------

def test_metric_logger_and_smoothed_value(capsys):
    logger = utils.MetricLogger(delimiter='  ')
    for i, _ in enumerate(logger.log_every(range(4), print_freq=2, header='Epoch: [0]')):
        logger.update(loss=float(i), lr=torch.tensor(0.5), skipped=None)
    assert logger.loss.global_avg == pytest.approx(1.5)
    assert logger.loss.median == 1.0 and logger.loss.max == 3.0 and logger.lr.value == 0.5
    out = capsys.readouterr().out
    assert 'Epoch: [0]  [0/4]' in out and '[3/4]' in out and 'Total time' in out and 'max mem' not in out
    assert utils.all_reduce_mean(2.5) == 2.5
    with pytest.raises(AttributeError):
        logger.nothing


def test_tensorboard_logger(tmp_path):
    tb = utils.TensorboardLogger(log_dir=str(tmp_path))
    tb.set_step(10)
    tb.update(head='loss', loss=torch.tensor(1.0))
    tb.set_step()
    assert tb.step == 11
    tb.flush()
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(tmp_path))


DIST_SCRIPT = r"""
import argparse, sys
sys.path.insert(0, '.')
import utils
args = argparse.Namespace(device='cpu', dist_on_itp=False, dist_url='env://', world_size=1)
utils.init_distributed_mode(args)
assert args.distributed and args.dist_backend == 'gloo' and args.rank == 0, vars(args)
assert utils.all_reduce_mean(3.0) == 3.0
logger = utils.MetricLogger()
logger.update(loss=2.0)
logger.update(loss=4.0)
logger.synchronize_between_processes()
assert logger.loss.global_avg == 3.0 and logger.loss.count == 2
import torch
assert not torch.cuda.is_initialized()
print('ok-dist', flush=True)
"""


@pytest.mark.parametrize('launcher', ['torchrun', 'slurm'])
def test_init_distributed_gloo_on_cpu(launcher):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = {'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'CUDA_VISIBLE_DEVICES': ''}
    if launcher == 'torchrun':
        env.update(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0')
    else:  # SLURM with no GPU: upstream divided by torch.cuda.device_count() == 0
        env.update(SLURM_PROCID='0', SLURM_LOCALID='0')
    proc = run_cli(['-c', DIST_SCRIPT], env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'ok-dist' in proc.stdout


def test_build_train_sampler_reshuffles_each_epoch():
    sampler = utils.build_train_sampler(list(range(32)), argparse.Namespace(seed=0))
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(first) == list(range(32)) and list(sampler) != first


def test_remap_reexported():
    import models.utils
    assert utils.remap_checkpoint_keys is models.utils.remap_checkpoint_keys
    assert sys.modules['utils'] is utils
