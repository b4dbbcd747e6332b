import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_image_folder, run_cli

import main_pretrain
from rheed.errors import UserError

BASE = ['main_pretrain.py', '--model', 'convnextv2_atto', '--input_size', '64', '--device', 'cpu',
        '--batch_size', '4', '--num_workers', '0']


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def pretrain_data(tmp_path_factory):
    """Split root with train/ (12 frames) and val/ (4 frames)."""
    root = tmp_path_factory.mktemp("pre_split")
    make_image_folder(root / "train", n_per_class=(6, 6), seed=0)
    make_image_folder(root / "val", n_per_class=(2, 2), seed=1)
    return root


def test_pretrain_two_epochs_then_auto_resume(pretrain_data, tmp_path):
    out = tmp_path / 'pre'
    proc = run_cli(BASE + ['--epochs', '2', '--data_path', pretrain_data, '--output_dir', out,
                           '--log_dir', out / 'tb'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Pre-training on 12 images' in proc.stdout  # train/ only, val/ is not used
    assert 'effective batch size: 4' in proc.stdout and 'actual lr: 2.34e-06' in proc.stdout
    assert (out / 'checkpoint-0.pth').is_file() and (out / 'checkpoint-1.pth').is_file()
    log = read_log(out / 'log.txt')
    assert [entry['epoch'] for entry in log] == [0, 1]
    assert list(log[0]) == ['train_lr', 'train_loss', 'epoch', 'n_parameters']
    assert all(0 < entry['train_loss'] < 10 for entry in log)
    assert any(p.name.startswith('events.out.tfevents') for p in (out / 'tb').iterdir())

    ckpt = torch.load(out / 'checkpoint-1.pth')  # default weights_only=True
    assert ckpt['epoch'] == 1 and ckpt['args']['model'] == 'convnextv2_atto'
    assert ckpt['scaler'] == {}
    assert any(k.startswith('encoder.stages.') for k in ckpt['model'])
    assert not [p for p in out.iterdir() if p.name.endswith('.tmp')]

    proc = run_cli(BASE + ['--epochs', '3', '--data_path', pretrain_data, '--output_dir', out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Auto resume checkpoint: {out / 'checkpoint-1.pth'}" in proc.stdout
    assert 'from epoch 2' in proc.stdout
    log = read_log(out / 'log.txt')
    assert [entry['epoch'] for entry in log] == [0, 1, 2]
    assert torch.load(out / 'checkpoint-2.pth')['epoch'] == 2


def test_help():
    proc = run_cli(['main_pretrain.py', '-h'])
    assert proc.returncode == 0
    for flag in ('--norm_pix_loss', '--local-rank', '--use_amp', '--amp_dtype', '--clip_grad',
                 '--unlabeled_data_path', '--bit_scaling', '--skip_corrupt', '--decoder_embed_dim'):
        assert flag in proc.stdout


def test_parser_defaults_and_booleans():
    parser = main_pretrain.get_args_parser()
    args = parser.parse_args([])
    assert (args.batch_size, args.epochs, args.warmup_epochs, args.model, args.input_size) == \
        (64, 800, 40, 'convnextv2_base', 224)
    assert (args.mask_ratio, args.blr, args.min_lr, args.weight_decay, args.lr) == (0.6, 1.5e-4, 0.0, 0.05, None)
    assert args.norm_pix_loss is True and args.use_amp is False and args.amp_dtype == 'bfloat16'
    assert args.clip_grad is None and args.bit_scaling == 'percentile' and args.skip_corrupt is False
    assert (args.auto_resume, args.save_ckpt, args.save_ckpt_freq, args.save_ckpt_num) == (True, True, 1, 3)
    assert parser.parse_args(['--norm_pix_loss']).norm_pix_loss is True
    assert parser.parse_args(['--norm_pix_loss', 'false']).norm_pix_loss is False
    assert parser.parse_args(['--local-rank=1']).local_rank == 1
    assert parser.parse_args(['--local_rank', '2']).local_rank == 2


def test_missing_data_path(tmp_path):
    proc = run_cli(BASE + ['--epochs', '1', '--data_path', tmp_path / 'nope', '--output_dir', tmp_path / 'o'])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'nope' in lines[0]


@pytest.mark.parametrize('sub', ['no_train', 'val', 'val/rough', '..'])
def test_refuses_val_and_test_frames(pretrain_data, tmp_path, sub):
    if sub == 'no_train':  # a split root without train/: recursion would reach val/
        root = tmp_path / 'split'
        shutil.copytree(pretrain_data / 'val', root / 'val')
        make_image_folder(root / 'test', n_per_class=(2, 2), seed=2)
        data_path = root
    else:
        data_path = pretrain_data / sub
    with pytest.raises(UserError, match='held-out'):
        main_pretrain.resolve_pretrain_files(data_path)
    with pytest.raises(UserError, match='held-out'):
        main_pretrain.resolve_pretrain_files(pretrain_data, unlabeled_data_path=data_path)


def run_in_process(argv):
    """main_pretrain.cli in this process; returns the SystemExit message (None on success)."""
    try:
        main_pretrain.cli([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return None


def test_refusal_from_cli(pretrain_data, tmp_path):
    code = run_in_process(BASE[1:] + ['--epochs', '1', '--data_path', pretrain_data / 'val',
                                      '--output_dir', tmp_path / 'o'])
    assert code.startswith('error: refusing to pre-train on held-out frames')


def test_flat_folder_and_unlabeled_frames(pretrain_data, tmp_path):
    flat = tmp_path / 'frames'
    make_image_folder(flat / 'run1', classes=('a',), n_per_class=(3,), seed=3)
    files = main_pretrain.resolve_pretrain_files(flat)
    assert len(files) == 3  # recursive, no class folders needed
    files = main_pretrain.resolve_pretrain_files(pretrain_data, unlabeled_data_path=flat)
    assert len(files) == 15
    assert not any('/val/' in f for f in files)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(UserError, match='no images'):
        main_pretrain.resolve_pretrain_files(empty)


def test_corrupt_frame_refused_then_skipped(pretrain_data, tmp_path, capsys):
    data = tmp_path / 'data'
    shutil.copytree(pretrain_data / 'train', data / 'train')
    (data / 'train' / 'rough' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\x00' * 20)
    args = BASE[1:] + ['--epochs', '1', '--data_path', data, '--output_dir', tmp_path / 'o']
    code = run_in_process(args)
    assert code.startswith('error: ') and '--skip_corrupt' in code
    assert 'broken.png' in capsys.readouterr().err
    assert run_in_process(args + ['--skip_corrupt', 'true']) is None
    out = capsys.readouterr()
    assert 'broken.png' in out.err and 'Pre-training on 12 images' in out.out
    assert len(read_log(tmp_path / 'o' / 'log.txt')) == 1


def test_frame_crop_checked_then_stored(pretrain_data, tmp_path, capsys):
    args = BASE[1:] + ['--epochs', '1', '--data_path', pretrain_data, '--output_dir', tmp_path / 'o']
    code = run_in_process(args + ['--frame_crop', '0', '0', '0', '10'])
    assert code.startswith('error: --frame_crop 0 0 0 10: needs') and not (tmp_path / 'o').exists()
    code = run_in_process(args + ['--frame_crop', '0', '0', '64', '65'])
    assert code.startswith('error: 12 of 12 image files do not fit the --frame_crop box')
    assert 'reaches outside the 64x64 frame' in capsys.readouterr().err
    assert run_in_process(args + ['--frame_crop', '4', '4', '60', '60']) is None
    ckpt = torch.load(tmp_path / 'o' / 'checkpoint-0.pth', map_location='cpu', weights_only=False)
    assert ckpt['args']['frame_crop'] == [4, 4, 60, 60]


def test_submitit_help_and_requeue_resumes_written_checkpoint(tmp_path, monkeypatch, capsys):
    import submitit_pretrain

    monkeypatch.setattr('sys.argv', ['submitit_pretrain.py', '-h'])
    with pytest.raises(SystemExit) as exc:
        submitit_pretrain.main()
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert '--ngpus' in help_text and '--job_dir' in help_text and '--norm_pix_loss' in help_text

    out = tmp_path / 'job'
    out.mkdir()
    args = main_pretrain.get_args_parser().parse_args(['--output_dir', str(out), '--resume', 'first.pth'])
    args.job_dir = str(out)
    trainer = submitit_pretrain.Trainer(args, 'main_pretrain')
    assert trainer.checkpoint().function.args.resume == 'first.pth'  # nothing written yet: keep --resume
    (out / 'checkpoint-3.pth').write_bytes(b'x')
    requeued = trainer.checkpoint().function
    assert isinstance(requeued, submitit_pretrain.Trainer)
    assert requeued.args.resume == '' and requeued.args.auto_resume is True
    assert requeued.args.dist_url.startswith('file://' + str(out))


def test_resume_after_a_lost_checkpoint_keeps_one_log_line_per_epoch(pretrain_data, tmp_path):
    """Epochs logged after the last numbered checkpoint are trained again on resume; the log must not
    hold them twice (and the checkpoint of an epoch is written after its log line)."""
    out = tmp_path / 'pre'
    args = BASE + ['--epochs', '3', '--save_ckpt_freq', '2', '--data_path', pretrain_data, '--output_dir', out]
    assert run_cli(args).returncode == 0
    (out / 'checkpoint-2.pth').unlink()  # as if killed after epoch 2's log line, before its checkpoint
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'from epoch 2' in proc.stdout
    assert [entry['epoch'] for entry in read_log(out / 'log.txt')] == [0, 1, 2]


@pytest.mark.parametrize('copy', [False, True])
def test_source_folder_of_a_split_leaves_out_its_val_and_test_frames(tmp_path, copy):
    """--data_path data_rheed next to data_rheed_split (hard links or copies): val/test frames are left out."""
    from rheed.split import split_dataset
    source = make_image_folder(tmp_path / 'data_rheed', classes=('layer_smooth', 'island_rough'),
                               n_per_class=(20, 20), size=32)
    split_dataset(str(source), str(tmp_path / 'data_rheed_split'), temporal_layer=True, similarity=False,
                  copy=copy, verbose=False)
    rows = (tmp_path / 'data_rheed_split' / 'manifest.csv').read_text().splitlines()[1:]
    held_out = {row.split(',')[1] for row in rows if row.split(',')[-1] in ('val', 'test')}
    assert held_out
    files = main_pretrain.resolve_pretrain_files(source)
    assert files and not held_out & {str(Path(f)) for f in files}
    assert len(files) == 40 - len(held_out)


def test_shared_frame_and_run_flags_agree_with_fine_tuning():
    import main_finetune
    pre = vars(main_pretrain.get_args_parser().parse_args([]))
    fine = vars(main_finetune.get_args_parser().parse_args([]))
    shared = ('bit_scaling', 'bit_max', 'skip_corrupt', 'subtract_background', 'frame_cache', 'frame_cache_dir',
              'overwrite', 'channels_last', 'compile', 'fused_optimizer', 'use_amp')
    assert {k: pre[k] for k in shared} == {k: fine[k] for k in shared}
    # the one intended difference: bfloat16 for FCMAE (no loss scaling), float16 as upstream for fine-tuning
    assert (pre['amp_dtype'], fine['amp_dtype']) == ('bfloat16', 'float16')
    args = main_pretrain.get_args_parser().parse_args(['--frame_cache', 'true', '--bit_scaling', 'fixed',
                                                       '--bit_max', '4095'])
    assert (args.frame_cache, args.bit_scaling, args.bit_max) == (True, 'fixed', 4095.0)
