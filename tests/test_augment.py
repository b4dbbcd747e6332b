"""The RHEED transforms (--aug_mode rheed, --subtract_background) and their use by build_transform."""
import argparse

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from rheed import augment

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def streak_frame(width=160, height=120, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.arange(width)
    img = 20 + rng.normal(0, 2, (height, width))
    for cx in (40, 80, 120):
        img[10:100] += 200 * np.exp(-((x - cx) ** 2) / 4.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert('RGB')


def args_for(mode, background=False, size=64, despeckle=False):
    return argparse.Namespace(aug_mode=mode, subtract_background=background, despeckle=despeckle, input_size=size,
                              crop_scale=[0.5, 1.0],
                              imagenet_default_mean_and_std=True, color_jitter=None, aa='', reprob=0.0,
                              remode='pixel', recount=1, train_interpolation='bicubic', crop_pct=None)


def test_train_transform_keeps_gray_and_size():
    torch.manual_seed(0)
    transform = datasets.build_transform(True, args_for('rheed'))
    for _ in range(10):
        x = transform(streak_frame())
        assert x.shape == (3, 64, 64)
        gray = [x[c] * STD[c] + MEAN[c] for c in range(3)]
        torch.testing.assert_close(gray[0], gray[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(gray[0], gray[2], atol=1e-5, rtol=0)


def test_eval_transform_keeps_the_whole_frame():
    frame = streak_frame()
    x = datasets.build_transform(False, args_for('rheed'))(frame)
    assert x.shape == (3, 64, 64)
    # all three streaks survive (a centre crop of a 4:3 frame would cut the outer ones)
    profile = x[0].mean(dim=0)
    peaks = [i for i in range(1, 63) if profile[i] > profile[i - 1] and profile[i] >= profile[i + 1]
             and profile[i] > profile.mean() + profile.std()]
    assert len(peaks) == 3


def test_subtract_background_zeroes_the_background_and_keeps_streaks():
    x = datasets.build_transform(False, args_for('rheed', background=True))(streak_frame())
    assert float(x.min()) == 0.0
    assert float((x == 0).float().mean()) > 0.5  # the dark screen and diffuse background are exactly zero
    assert 2.0 < float(x.max()) <= 4.0  # the pattern is scaled to [0, 1], then divided by 0.25
    full = np.asarray(augment.SubtractBackground()(streak_frame()))
    assert full.max() == 255 and (full == 0).mean() > 0.5
    assert np.array_equal(full[..., 0], full[..., 2])  # still gray


def test_subtract_background_happens_on_the_whole_frame_before_the_crop():
    transform = datasets.build_transform(True, args_for('rheed', background=True))
    assert type(transform.transforms[0]).__name__ == 'SubtractBackground'
    x = transform(streak_frame())
    assert x.shape == (3, 64, 64) and float(x.min()) == 0.0


def hot_pixel_frames():
    """A streak frame on a flat background, and the same frame with three stuck pixels in the background."""
    img = np.full((120, 160), 20.0)
    img[10:100, 78:83] = 220.0   # a 5-pixel-wide streak
    hot = img.copy()
    hot[30, 20], hot[60, 140], hot[110, 50] = 255.0, 180.0, 140.0
    return [Image.fromarray(a.astype(np.uint8)).convert('RGB') for a in (img, hot)]


def test_despeckle_removes_hot_pixels_and_keeps_the_pattern():
    clean, hot = hot_pixel_frames()
    filtered = np.asarray(augment.Despeckle()(hot))
    assert np.array_equal(filtered, np.asarray(augment.Despeckle()(clean)))
    assert np.array_equal(filtered, np.asarray(clean))   # the streak and the background are untouched
    line = np.full((20, 20), 10, np.uint8)
    line[2:18, 9] = 200   # a 1-pixel line is kept whole: each of its pixels has a neighbour as bright
    assert np.array_equal(np.asarray(augment.Despeckle()(Image.fromarray(line)))[..., 0], line)
    # without it the stuck pixels survive background subtraction as bright points
    subtracted = np.asarray(augment.SubtractBackground('adaptive')(hot))[..., 0]
    assert subtracted[30, 20] > 0 and subtracted[60, 140] > 0
    transform = datasets.build_transform(False, args_for('rheed', background=True, despeckle=True))
    assert [type(t).__name__ for t in transform.transforms[:2]] == ['Despeckle', 'SubtractBackground']
    assert torch.equal(transform(hot), transform(clean))
    plain = datasets.build_transform(False, args_for('rheed', background=True))
    assert not torch.equal(plain(hot), plain(clean))


def test_despeckle_comes_after_the_camera_and_before_the_background_in_training():
    args = args_for('rheed', background=True, despeckle=True)
    args.camera_aug = True
    names = [type(t).__name__ for t in datasets.build_transform(True, args).transforms[:3]]
    assert names == ['RandomCamera', 'Despeckle', 'SubtractBackground']
    import main_pretrain
    pretrain = main_pretrain.build_pretrain_transform(64, True, 'adaptive', True)
    assert [type(t).__name__ for t in pretrain.transforms[:2]] == ['Despeckle', 'SubtractBackground']


def test_upstream_mode_is_unchanged():
    transform = datasets.build_transform(False, args_for('upstream'))
    names = [type(t).__name__ for t in transform.transforms]
    assert names == ['Resize', 'CenterCrop', 'ToTensor', 'Normalize']


def test_pretrain_transform_can_match_the_finetuning_input():
    import main_pretrain
    plain = main_pretrain.build_pretrain_transform(64)
    assert type(plain.transforms[0]).__name__ == 'RandomResizedCrop'
    transform = main_pretrain.build_pretrain_transform(64, subtract_background=True)
    assert type(transform.transforms[0]).__name__ == 'SubtractBackground'
    x = transform(streak_frame())
    assert x.shape == (3, 64, 64) and float(x.min()) == 0.0


def test_pattern_gamma_raises_the_scaled_pattern_to_a_power():
    frame = streak_frame()
    linear = np.asarray(augment.SubtractBackground('adaptive')(frame), dtype=np.float64)
    squared = np.asarray(augment.SubtractBackground('adaptive', gamma=2.0)(frame), dtype=np.float64)
    np.testing.assert_allclose(squared, 255 * (linear / 255) ** 2, atol=1.5)  # both rounded to 8 bits
    assert (squared[linear == 0] == 0).all() and squared.max() == 255  # background stays zero, peak stays 1
    mid = (linear > 60) & (linear < 200)
    assert mid.any() and (squared[mid] < linear[mid] - 10).all()  # faint residue sinks against the peaks
    # gamma 1 keeps the old repr, so existing frame caches stay valid; another gamma is a different cache
    assert repr(augment.SubtractBackground('adaptive')) == "SubtractBackground(mode='adaptive')"
    assert repr(augment.SubtractBackground('adaptive', 2.0)) == "SubtractBackground(mode='adaptive', gamma=2.0)"
    with pytest.raises(ValueError, match="pattern gamma must be positive"):
        augment.SubtractBackground('adaptive', 0.0)


def test_pattern_gamma_reaches_training_evaluation_and_pre_training():
    import main_pretrain
    args = args_for('rheed', background=True)
    args.background_mode, args.pattern_gamma = 'adaptive', 2.0
    for is_train in (True, False):
        steps = datasets.build_transform(is_train, args).transforms
        assert [s.gamma for s in steps if isinstance(s, augment.SubtractBackground)] == [2.0]
    steps = main_pretrain.build_pretrain_transform(64, True, 'adaptive', True, pattern_gamma=2.0).transforms
    assert [s.gamma for s in steps if isinstance(s, augment.SubtractBackground)] == [2.0]
    x = datasets.build_transform(False, args)(streak_frame())
    expected = np.asarray(augment.SubtractBackground('adaptive', 2.0)(streak_frame()).resize(
        (64, 64), Image.BICUBIC), dtype=np.float32)[..., 0] / 255 / 0.25
    np.testing.assert_allclose(x[0].numpy(), expected, atol=0.1)


@pytest.mark.parametrize("script", ["main_finetune.py", "main_pretrain.py"])
@pytest.mark.parametrize("flags, message", [
    (["--pattern_gamma", "2"], "error: --pattern_gamma 2.0 needs --subtract_background true (it shapes the "
                               "background-free pattern)"),
    (["--pattern_gamma", "0", "--subtract_background", "true"], "error: --pattern_gamma 0.0: needs a power above 0 "
                                                                "(1 = linear)"),
])
def test_pattern_gamma_checks(tmp_path, tiny_split, script, flags, message):
    from conftest import run_cli
    data = ["--data_set", "RHEED"] if script == "main_finetune.py" else ["--model", "convnextv2_atto"]
    proc = run_cli([script, *data, "--data_path", tiny_split, "--device", "cpu", *flags,
                    "--output_dir", tmp_path / "out"], timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def glow_frame(width=480, height=360, seed=0) -> Image.Image:
    """A bright phosphor-screen glow filling most of a dark frame, with faint streaks on top of it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot(xx - width / 2, yy - height / 2)
    img = np.where(r < 170, 140 + 60 * np.exp(-(r / 150) ** 2), 5.0) + rng.normal(0, 1.5, (height, width))
    for cx in (180, 240, 300):
        img[100:260] += 30 * np.exp(-((xx[100:260] - cx) ** 2) / 4.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert('RGB')


def test_auto_background_keeps_streaks_that_the_global_level_erases():
    frame = glow_frame()
    erased = np.asarray(augment.SubtractBackground('global')(frame))[..., 0]
    assert np.count_nonzero(erased) < augment.AUTO_MIN_PATTERN_FRACTION * erased.size  # the glow lifts the level
    kept = np.asarray(augment.SubtractBackground('auto')(frame))[..., 0].astype(float)
    profile = kept[120:240].mean(axis=0)
    assert all(profile[cx] > 4 * np.median(profile) + 20 for cx in (180, 240, 300))  # the three streaks stand out
    # a frame the global level handles is left exactly as before
    sparse = streak_frame()
    assert np.array_equal(np.asarray(augment.SubtractBackground('auto')(sparse)),
                          np.asarray(augment.SubtractBackground('global')(sparse)))
    assert repr(augment.SubtractBackground('auto')) == "SubtractBackground(mode='auto')"  # part of the cache key


def small_screen_frame(width=480, height=360, seed=0) -> Image.Image:
    """A circular screen covering a third of a black frame: vignetted glow, shot-like noise, three streaks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot(xx - width / 2, yy - height / 2)
    glow = np.where(r < 130, 60 + 50 * np.exp(-(r / 90) ** 2), 0.0)
    img = glow + rng.normal(0, 1.0, (height, width)) * np.sqrt(glow / 10 + 0.1)
    for cx in (200, 240, 280):
        img[120:240] += 60 * np.exp(-((xx[120:240] - cx) ** 2) / 4.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert('RGB'), r


def test_adaptive_background_removes_a_small_screen_and_its_rim():
    frame, r = small_screen_frame()
    # more than half of the frame is black, so median + 3 MAD of the whole frame is ~0: the screen stays
    whole = np.asarray(augment.SubtractBackground('global')(frame))[..., 0]
    assert np.count_nonzero(whole[r < 120]) > 0.9 * np.count_nonzero(r < 120)
    out = np.asarray(augment.SubtractBackground('adaptive')(frame))[..., 0].astype(float)
    streaks = np.zeros_like(out, dtype=bool)
    for cx in (200, 240, 280):
        streaks[120:240, cx - 4:cx + 5] = True
    assert out[streaks].mean() > 100                                # the streaks carry the output
    assert out[~streaks].mean() < 1 and np.percentile(out[~streaks], 99) < 15  # glow and surround gone, faint noise
    assert out[(r > 120) & (r < 140)].mean() < 1                     # no bright ring at the screen edge
    assert repr(augment.SubtractBackground('adaptive')) == "SubtractBackground(mode='adaptive')"


def test_adaptive_background_handles_tiny_and_flat_frames():
    for shape in [(8, 8), (40, 30), (64, 64)]:
        flat = Image.fromarray(np.full(shape, 90, np.uint8)).convert('RGB')
        out = np.asarray(augment.SubtractBackground('adaptive')(flat))
        assert out.shape == shape + (3,) and not out.any()


def test_crop_scale_above_one_zooms_out_with_a_zero_border():
    crop = augment.RandomCropKeepingAspect(64, scale=(1.4, 1.6))
    torch.manual_seed(0)
    frame = Image.new('RGB', (160, 120), (200, 200, 200))
    for _ in range(20):
        top, left, h, w = crop.window(160, 120, (160 / 120 / 1.25, 160 / 120 * 1.25))
        assert 1.4 * 0.99 <= h * w / (160 * 120) <= 1.6 * 1.01
        # a side longer than the frame's covers it: the whole frame height or width is inside the window
        if w >= 160:
            assert left <= 0 and left + w >= 160
        if h >= 120:
            assert top <= 0 and top + h >= 120
        x = np.asarray(crop(frame))[..., 0]
        assert x.shape == (64, 64) and x[32, 32] == 200
        assert (x == 0).mean() > 0.1   # the zoomed-out frame leaves a black border
    # scales up to 1 keep torchvision's sampler: the same windows as before zoom-out existed
    torch.manual_seed(1)
    ours = augment.RandomCropKeepingAspect(64, scale=(0.5, 1.0))(streak_frame())
    torch.manual_seed(1)
    aspect = 160 / 120
    top, left, h, w = augment.transforms.RandomResizedCrop.get_params(
        streak_frame(), (0.5, 1.0), (aspect / 1.25, aspect * 1.25))
    theirs = augment.TF.resized_crop(streak_frame(), top, left, h, w, [64, 64],
                                     interpolation=augment.transforms.InterpolationMode.BICUBIC, antialias=True)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_crop_shift_moves_the_window_past_the_frame_edges():
    crop = augment.RandomCropKeepingAspect(64, scale=(0.9, 0.9), shift=0.2)
    torch.manual_seed(0)
    lefts, tops = [], []
    for _ in range(300):
        top, left, h, w = crop.window(160, 120, (160 / 120, 160 / 120))
        assert -32 <= left and left + w <= 160 + 32 and -24 <= top and top + h <= 120 + 24
        lefts.append(left)
        tops.append(top)
    assert min(lefts) < 0 and max(lefts) + w > 160 and min(tops) < 0 and max(tops) + h > 120
    # the part of the window past the edge is zero: some views of a uniform frame have a black margin
    frame = Image.new('RGB', (160, 120), (200, 200, 200))
    black = [(np.asarray(crop(frame))[..., 0] == 0).mean() for _ in range(50)]
    assert max(black) > 0.05 and min(black) == 0.0
    args = args_for('rheed', background=True)
    args.crop_shift = 0.2
    assert datasets.build_transform(True, args).transforms[1].shift == 0.2


def test_crop_scale_checks(tmp_path, tiny_split):
    from conftest import run_cli
    for scale, mode in ((('0.5', '1.5'), 'upstream'), (('0', '1'), 'rheed'), (('0.9', '0.5'), 'rheed')):
        proc = run_cli(["main_finetune.py", "--data_set", "RHEED", "--data_path", tiny_split, "--device", "cpu",
                        "--aug_mode", mode, "--crop_scale", *scale, "--output_dir", tmp_path / "out"], timeout=120)
        assert proc.returncode != 0 and "--crop_scale" in proc.stderr and "needs 0 < MIN <= MAX" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    for shift, mode in (('0.2', 'upstream'), ('0.6', 'rheed'), ('-0.1', 'rheed')):
        proc = run_cli(["main_finetune.py", "--data_set", "RHEED", "--data_path", tiny_split, "--device", "cpu",
                        "--aug_mode", mode, "--crop_shift", shift, "--output_dir", tmp_path / "out"], timeout=120)
        assert proc.returncode != 0 and proc.stderr.strip() == (
            f"error: --crop_shift {float(shift)}: needs --aug_mode rheed and a share between 0 and 0.5")
        assert not (tmp_path / "out").exists()


def test_camera_response_keeps_the_pattern_and_saturates():
    rng = np.random.default_rng(0)
    gray = np.full((40, 50), 20.0)
    gray[:, 24:26] = 150.0   # a streak
    seen = set()
    for _ in range(200):
        quality, pixels = augment.camera_response(gray, rng)
        assert pixels.shape == gray.shape and pixels.min() >= 0 and pixels.max() <= 255
        assert pixels[:, 24:26].mean() > pixels[:, :20].mean() + 30    # the streak stays the brightest feature
        assert quality is None or 30 <= quality <= 90
        seen.add("png" if quality is None else "jpeg")
        seen.add("saturated" if pixels.max() == 255 else "unsaturated")
        assert not (quality is None and np.array_equal(pixels, gray))  # at least one change every time
    assert seen == {"jpeg", "png", "saturated", "unsaturated"}
    for _ in range(50):
        quality, pixels = augment.camera_response(gray, rng, gain=False)
        assert pixels.max() < 255 and (quality is not None or not np.array_equal(pixels, gray))


def test_random_camera_changes_two_thirds_of_the_frames_and_comes_first():
    frame = streak_frame()
    camera = augment.RandomCamera()
    changed = [not np.array_equal(np.asarray(camera(frame, np.random.default_rng(i))), np.asarray(frame))
               for i in range(300)]
    assert 0.55 < np.mean(changed) < 0.78
    out = augment.RandomCamera(p=1.0)(frame, np.random.default_rng(1))
    assert out.mode == 'RGB' and out.size == frame.size
    gray = np.asarray(out)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    args = args_for('rheed', background=True)
    assert not any(isinstance(t, augment.RandomCamera) for t in datasets.build_transform(True, args).transforms)
    args.camera_aug = True
    steps = datasets.build_transform(True, args).transforms
    assert isinstance(steps[0], augment.RandomCamera) and isinstance(steps[1], augment.SubtractBackground)
    assert not any(isinstance(t, augment.RandomCamera) for t in datasets.build_transform(False, args).transforms)
    torch.manual_seed(0)
    assert datasets.build_transform(True, args)(frame).shape == (3, 64, 64)   # drawn from `random` without rng


def test_pad_aspect_gives_every_sensor_shape_the_same_proportions():
    frame = streak_frame()                                  # 160 x 120 (4:3), streaks at x = 40, 80, 120
    pad = augment.PadToAspect(4 / 3)
    assert pad(frame) is frame                              # a frame of that aspect is unchanged
    square = augment.PadToAspect(1.0)(frame)
    assert square.size == (160, 160)
    x = np.asarray(square)[..., 0]
    assert (x[:20] == 0).all() and (x[140:] == 0).all() and np.array_equal(x[20:140], np.asarray(frame)[..., 0])
    assert augment.padded_size(160, 160, 4 / 3) == (213, 160) and augment.padded_size(192, 108, 4 / 3) == (192, 144)
    # the frame recorded on a square sensor (black above and below) and on a 16:9 one (black left and right)
    gray = np.asarray(frame)[..., 0]
    on_square = Image.fromarray(np.pad(gray, ((20, 20), (0, 0)))).convert('RGB')
    on_wide = Image.fromarray(np.pad(gray, ((0, 0), (27, 26)))).convert('RGB')
    args = args_for('rheed', background=True)
    squashed = datasets.build_transform(False, args)
    assert float((squashed(frame) - squashed(on_square)).abs().mean()) > 0.02
    args.pad_aspect = 4 / 3
    evaluate = datasets.build_transform(False, args)
    assert isinstance(evaluate.transforms[1], augment.PadToAspect)
    torch.testing.assert_close(evaluate(frame), squashed(frame), rtol=0, atol=0)   # 4:3 frames: as before
    for other in (on_square, on_wide):
        x = evaluate(other)
        # the same streaks at 3/4 of the size: streak length / frame height and streak spacing / frame width kept
        column, profile = x[0][:, 32], x[0].mean(dim=0)
        lit_rows = int((column > 0.5 * column.max()).sum())
        assert abs(lit_rows - 0.75 * 64 * 90 / 120) <= 3
        peaks = [i for i in range(1, 63) if profile[i] > profile[i - 1] and profile[i] >= profile[i + 1]
                 and profile[i] > 0.5 * profile.max()]
        assert len(peaks) == 3 and abs((peaks[2] - peaks[0]) - 0.75 * 64 * 80 / 160) <= 2


def test_pad_aspect_training_windows_come_from_the_padded_frame():
    frame = Image.new('RGB', (160, 160), (200, 200, 200))   # a square sensor, padded to 4:3: 213 x 160
    crop = augment.RandomCropKeepingAspect(64, scale=(1.0, 1.0), ratio_spread=1.0, canvas_aspect=4 / 3)
    x = np.asarray(crop(frame))[..., 0]
    assert x.shape == (64, 64) and abs((x[32] > 100).sum() - 64 * 160 / 213) <= 1 and (x[:, 32] > 100).all()
    args = args_for('rheed', background=True)
    args.pad_aspect, args.crop_shift = 4 / 3, 0.2
    window = datasets.build_transform(True, args).transforms[1]
    assert window.canvas_aspect == 4 / 3 and window.shift == 0.2
    # a whole-canvas window moved by up to 20 % of its side: the frame keeps its scale (48 columns unless the
    # window's edge cuts it), its place varies
    shifted = augment.RandomCropKeepingAspect(64, scale=(1.0, 1.0), ratio_spread=1.0, shift=0.2, canvas_aspect=4 / 3)
    torch.manual_seed(0)
    widths, first_columns = [], []
    for _ in range(50):
        columns = np.flatnonzero(np.asarray(shifted(frame))[32, :, 0] > 100)
        widths.append(len(columns))
        first_columns.append(columns[0])
    assert max(widths) <= 49 and np.mean(np.abs(np.array(widths) - 48) <= 1) > 0.5
    assert max(first_columns) - min(first_columns) > 15
    # a frame that needs no padding gets the same windows as without it (same random draws), also when its aspect
    # is 4:3 only after rounding (a 656 x 492 frame cached at 341 x 256)
    for streaks in (streak_frame(), streak_frame(341, 256)):
        torch.manual_seed(3)
        plain = [np.asarray(augment.RandomCropKeepingAspect(64, (0.5, 2.0), shift=0.2)(streaks)) for _ in range(20)]
        torch.manual_seed(3)
        padded = [np.asarray(augment.RandomCropKeepingAspect(64, (0.5, 2.0), shift=0.2, canvas_aspect=4 / 3)(streaks))
                  for _ in range(20)]
        assert all(np.array_equal(a, b) for a, b in zip(plain, padded))


def test_pad_aspect_checks(tmp_path, tiny_split):
    from conftest import run_cli
    from rheed.train_args import aspect_ratio
    assert aspect_ratio("4:3") == 4 / 3 and aspect_ratio("1.5") == 1.5 and aspect_ratio("0") == 0.0
    for bad in ("4:0", "wide", "-1", "inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not an aspect ratio such as 4:3"):
            aspect_ratio(bad)
    proc = run_cli(["main_finetune.py", "--data_set", "RHEED", "--data_path", tiny_split, "--device", "cpu",
                    "--pad_aspect", "4:3", "--output_dir", tmp_path / "out"], timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip() == "error: --pad_aspect needs --aug_mode rheed"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["camera_aug", "despeckle"])
def test_camera_aug_and_despeckle_need_rheed_mode(tmp_path, tiny_split, flag):
    from conftest import run_cli
    proc = run_cli(["main_finetune.py", "--data_set", "RHEED", "--data_path", tiny_split, "--device", "cpu",
                    f"--{flag}", "true", "--output_dir", tmp_path / "out"], timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip() == f"error: --{flag} true needs --aug_mode rheed"
    assert not (tmp_path / "out").exists()
