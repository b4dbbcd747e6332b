"""The frame cache (rheed/frame_cache.py): same tensors as reading the files, rebuilt when files or settings change."""
import json
import os
import time

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import datasets
from conftest import make_image_folder
from main_finetune import get_args_parser
from rheed.frame_cache import INDEX_FILE, cache_short_side, shrink


def make_args(data, out, **kw):
    args = get_args_parser().parse_args(["--data_set", "RHEED", "--data_path", str(data), "--input_size", "32",
                                         "--aug_mode", "rheed", "--subtract_background", "true",
                                         "--output_dir", str(out)])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


@pytest.fixture
def split(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root / "train", n_per_class=(3, 3), size=48, seed=0)
    make_image_folder(root / "val", n_per_class=(2, 2), size=48, seed=1)
    rng = np.random.default_rng(0)  # one 12-bit TIFF among the PNGs
    tifffile.imwrite(root / "val" / "rough" / "deep.tif", rng.integers(0, 4096, (40, 56), dtype=np.uint16))
    return root


def tensors(dataset):
    return [dataset[i][0] for i in range(len(dataset))]


def seeded_tensors(dataset):
    """tensors() after seeding every generator the random augmentations draw from."""
    import random
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    return tensors(dataset)


@pytest.mark.parametrize("pad_aspect", [0.0, 4 / 3])
def test_cached_frames_give_the_same_tensors(split, tmp_path, pad_aspect):
    for is_train in (False, True):
        plain, _ = datasets.build_dataset(is_train, make_args(split, tmp_path / "a", pad_aspect=pad_aspect))
        cached, _ = datasets.build_dataset(is_train, make_args(split, tmp_path / "b", frame_cache=True,
                                                               pad_aspect=pad_aspect))
        if is_train:  # random augmentation: the same seed on both sides
            a, b = seeded_tensors(plain), seeded_tensors(cached)
        else:
            a, b = tensors(plain), tensors(cached)
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert any((tmp_path / "b" / "frame_cache").rglob(INDEX_FILE))


def test_workers_read_one_cache(split, tmp_path):
    cached, _ = datasets.build_dataset(False, make_args(split, tmp_path / "o", frame_cache=True))
    serial = torch.cat([x for x, _ in torch.utils.data.DataLoader(cached, batch_size=2)])
    parallel = torch.cat([x for x, _ in torch.utils.data.DataLoader(cached, batch_size=2, num_workers=2)])
    assert torch.equal(serial, parallel)


def spot_frame(x: int) -> np.ndarray:
    frame = np.full((40, 56), 200, dtype=np.uint16)
    frame[15:25, x:x + 8] = 4000
    return frame


def test_changed_file_or_setting_rebuilds(split, tmp_path, capsys):
    target = split / "val" / "rough" / "deep.tif"
    tifffile.imwrite(target, spot_frame(5))
    args = make_args(split, tmp_path / "o", frame_cache=True)
    first, _ = datasets.build_dataset(False, args)
    index = [i for i, (p, _) in enumerate(first.samples) if p.endswith("deep.tif")][0]
    before = first[index][0].clone()
    assert "Frame cache: 5 frames" in capsys.readouterr().out
    datasets.build_dataset(False, args)
    assert "Frame cache" not in capsys.readouterr().out  # current: reused

    tifffile.imwrite(target, spot_frame(40))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10 ** 9))
    again, _ = datasets.build_dataset(False, args)
    assert "Frame cache: 5 frames" in capsys.readouterr().out
    plain, _ = datasets.build_dataset(False, make_args(split, tmp_path / "p"))
    assert torch.equal(again[index][0], plain[index][0]) and not torch.equal(again[index][0], before)

    args.bit_scaling = "minmax"
    datasets.build_dataset(False, args)
    assert "Frame cache: 5 frames" in capsys.readouterr().out

    args.despeckle = True   # a preprocessing step is a setting too: rebuilt on and off
    datasets.build_dataset(False, args)
    assert "Frame cache: 5 frames" in capsys.readouterr().out
    args.despeckle = False
    datasets.build_dataset(False, args)
    assert "Frame cache: 5 frames" in capsys.readouterr().out

    args.frame_crop = [4, 2, 36, 34]  # a crop box is a setting too: rebuilt, and the same tensors as the files
    cropped, _ = datasets.build_dataset(False, args)
    assert "Frame cache: 5 frames" in capsys.readouterr().out
    plain, _ = datasets.build_dataset(False, make_args(split, tmp_path / "q", bit_scaling="minmax",
                                                       frame_crop=[4, 2, 36, 34]))
    assert all(torch.equal(a, b) for a, b in zip(tensors(cropped), tensors(plain)))
    whole, _ = datasets.build_dataset(False, make_args(split, tmp_path / "r", bit_scaling="minmax"))
    assert any(not torch.equal(a, b) for a, b in zip(tensors(cropped), tensors(whole)))


def cache_shapes(out) -> set:
    index = json.loads(next((out / "frame_cache").rglob(INDEX_FILE)).read_text())
    return {tuple(v["shape"]) for e in index["frames"].values() for v in e["views"]}


def test_large_training_frames_are_cached_small(tmp_path, capsys):
    root = tmp_path / "big"
    make_image_folder(root / "train", n_per_class=(2, 2), size=160, seed=0)
    make_image_folder(root / "val", n_per_class=(2, 2), size=160, seed=1)

    plain_set = datasets.build_dataset(True, make_args(root, tmp_path / "a"))[0]
    plain = seeded_tensors(plain_set)
    args = make_args(root, tmp_path / "b", frame_cache=True)          # default: short side 2 x 32
    small_set = datasets.build_dataset(True, args)[0]
    small = seeded_tensors(small_set)
    assert cache_shapes(tmp_path / "b") == {(64, 64, 1)}
    assert all(x.shape == y.shape for x, y in zip(plain, small))  # random crops of a smaller array: not equal
    # the cached frame is the preprocessed frame plus one extra area-averaging resample: tiny differences
    from torchvision import transforms as T
    resize = T.Compose([T.Resize((32, 32), interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.ToTensor()])
    subtract = plain_set.transform.transforms[0]
    diffs = [float((resize(subtract(plain_set.loader(p))) - resize(small_set.loader(p))).abs().mean())
             for p, _ in plain_set.samples]
    assert 0 < max(diffs) < 0.05

    capsys.readouterr()
    args.frame_cache_size = 0                                         # as loaded: identical, and a rebuild
    full = seeded_tensors(datasets.build_dataset(True, args)[0])
    assert "Frame cache: 4 frames" in capsys.readouterr().out
    assert all(torch.equal(x, y) for x, y in zip(plain, full))


@pytest.mark.parametrize("aug_mode", ["rheed", "upstream"])
def test_evaluation_frames_are_cached_at_the_evaluation_size_and_give_the_same_tensors(tmp_path, aug_mode):
    """Validation/test metrics must be what predict.py (which reads the files) gives on the same frames."""
    root = tmp_path / "big"
    make_image_folder(root / "train", n_per_class=(2, 2), size=160, seed=0)
    make_image_folder(root / "val", n_per_class=(2, 2), size=160, seed=1)
    plain = tensors(datasets.build_dataset(False, make_args(root, tmp_path / "a", aug_mode=aug_mode, input_size=64))[0])
    cached = tensors(datasets.build_dataset(False, make_args(root, tmp_path / "b", aug_mode=aug_mode,
                                                             input_size=64, frame_cache=True))[0])
    assert all(torch.equal(x, y) for x, y in zip(plain, cached)) and len(plain) == 4
    assert cache_shapes(tmp_path / "b") == {(64, 64, 1)}              # the resized frame, not 2 x 64


def test_shrink_keeps_aspect_and_never_enlarges():
    img = Image.new("L", (300, 120))
    assert shrink(img, 60).size == (150, 60)
    assert shrink(img, 200).size == (300, 120) and shrink(img, 0).size == (300, 120)
    assert cache_short_side(None, 128) == 256 and cache_short_side(0, 128) == 0


def test_camera_views_are_drawn_once_per_frame_and_read_at_random(split, tmp_path, capsys):
    """--camera_aug with the cache: 3 stored views per training frame, each the camera draw of its seeded generator
    followed by the background subtraction; reading picks one of them; another --seed draws other views."""
    import random
    import shutil

    from rheed.augment import RandomCamera
    from rheed.frame_cache import CAMERA_VIEWS, view_key
    args = make_args(split, tmp_path / "o", frame_cache=True, frame_cache_size=0, camera_aug=True, seed=5)
    dataset, _ = datasets.build_dataset(True, args)
    assert "Frame cache: 6 frames x 3 views" in capsys.readouterr().out
    assert not any(isinstance(t, RandomCamera) for t in dataset.transform.transforms)   # moved into the cache
    plain = datasets.build_dataset(True, make_args(split, tmp_path / "p", camera_aug=True))[0]
    subtract = plain.transform.transforms[1]
    path = dataset.samples[0][0]
    camera = RandomCamera()
    expected = [np.asarray(subtract(camera(plain.loader(path), np.random.default_rng([5, view_key(path), view]))))
                for view in range(CAMERA_VIEWS)]
    random.seed(0)
    read = [np.asarray(dataset.loader(path)) for _ in range(40)]
    assert all(any(np.array_equal(r, e) for e in expected) for r in read)
    assert all(any(np.array_equal(r, e) for r in read) for e in expected)   # every view is read
    assert len({e.tobytes() for e in expected}) > 1

    datasets.build_dataset(True, args)
    assert "Frame cache" not in capsys.readouterr().out   # same seed: reused
    moved = tmp_path / "moved"                              # the same frames elsewhere: the same views
    shutil.copytree(split, moved)
    datasets.build_dataset(True, make_args(moved, tmp_path / "m", frame_cache=True, frame_cache_size=0, camera_aug=True,
                                           seed=5))
    data = {out: next((tmp_path / out / "frame_cache").rglob("frames.u8")).read_bytes() for out in ("o", "m")}
    assert data["o"] == data["m"]
    args.seed = 6
    datasets.build_dataset(True, args)
    assert "Frame cache: 6 frames x 3 views" in capsys.readouterr().out
    evaluation = datasets.build_dataset(False, args)[0]   # evaluation frames: one view, no camera
    assert "Frame cache: 5 frames, " in capsys.readouterr().out and len(evaluation) == 5
