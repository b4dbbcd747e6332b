import random

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from conftest import make_image_folder
from main_finetune import get_args_parser
from rheed.errors import UserError


def make_args(data_path, **kw):
    args = get_args_parser().parse_args(["--data_set", "RHEED", "--data_path", str(data_path), "--input_size", "64"])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_rheed_split_builds_train_val_test(tiny_split):
    args = make_args(tiny_split, nb_classes=2)
    train, k = datasets.build_dataset(True, args)
    val, k_val = datasets.build_dataset(False, args)
    test, k_test = datasets.build_dataset(False, args, split="test")
    assert k == k_val == k_test == 2
    assert train.classes == val.classes == test.classes == ["rough", "smooth"]
    assert len(train) == 24 and len(val) == 10 and len(test) == 10
    assert np.bincount(train.targets).tolist() == [8, 16]
    img, label = train[0]
    assert img.shape == (3, 64, 64) and label == 0
    img, _ = val[0]
    assert img.shape == (3, 64, 64)
    assert datasets.default_test_path(args) == str(tiny_split / "test")


def test_imagenet_layout_reads_test_data_path_for_the_test_split(tmp_path):
    """--data_set IMNET (upstream's default) with --test_data_path evaluates that folder, not <data_path>/val."""
    root = tmp_path / "imnet"
    make_image_folder(root / "train", n_per_class=(2, 2), size=32)
    make_image_folder(root / "val", n_per_class=(2, 2), size=32)
    other = make_image_folder(tmp_path / "other", n_per_class=(3, 4), size=32)
    args = make_args(root, data_set="IMNET", test_data_path=str(other), frame_cache=False)
    test, _ = datasets.build_dataset(False, args, split="test")
    assert len(test) == 7 and all(p.startswith(str(other)) for p, _ in test.samples)
    assert len(datasets.build_dataset(False, args)[0]) == 4  # validation stays <data_path>/val
    assert datasets.default_test_path(make_args(root, data_set="IMNET")) is None


def test_class_mismatch_and_bad_paths(tmp_path, tiny_split):
    root = tmp_path / "split"
    make_image_folder(root / "train", n_per_class=(2, 2), size=32)
    make_image_folder(root / "val", classes=("rough", "flat"), n_per_class=(2, 2), size=32)
    args = make_args(root)
    datasets.build_dataset(True, args)
    with pytest.raises(UserError, match="class folders differ"):
        datasets.build_dataset(False, args)
    with pytest.raises(UserError, match="does not match"):
        datasets.build_dataset(True, make_args(root, nb_classes=3))
    with pytest.raises(UserError, match="not found"):
        datasets.build_dataset(True, make_args(tmp_path / "missing"))
    with pytest.raises(UserError, match="not a split root"):
        datasets.build_dataset(True, make_args(root / "train"))


def test_corrupt_image_stops_or_is_skipped(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root / "train", n_per_class=(2, 3), size=32)
    (root / "train" / "rough" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="--skip_corrupt"):
        datasets.build_dataset(True, make_args(root))
    train, _ = datasets.build_dataset(True, make_args(root, skip_corrupt=True))
    assert len(train) == 5 and all("broken" not in p for p, _ in train.samples)


def test_cifar_is_never_downloaded(tmp_path):
    args = make_args(tmp_path, data_set="CIFAR")
    with pytest.raises(UserError, match="never downloads"):
        datasets.build_dataset(True, args)
    assert not any(tmp_path.iterdir())


def test_default_randaugment_runs_on_current_pillow():
    args = make_args("unused")
    transform = datasets.build_transform(True, args)
    names = [type(t).__name__ for t in transform.transforms]
    assert "RandAugment" in names and "RandomHorizontalFlip" in names and "RandomVerticalFlip" not in names
    random.seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    for _ in range(1000):  # magnitude 9 +- 0.5 sometimes reaches 10 = posterize to 0 bits
        out = transform(img)
        assert out.shape == (3, 64, 64) and torch.isfinite(out).all()


def test_posterize_zero_bits_gives_black_image():
    import timm_compat  # noqa: F401
    from timm.data import auto_augment

    img = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))
    out = auto_augment.NAME_TO_OP["PosterizeIncreasing"](img, 0)
    assert np.asarray(out).max() == 0
    # all posterize ops at magnitude 10 from the 'inc' policy
    op = auto_augment.AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10)
    assert np.asarray(op(img)).max() == 0


def test_only_rank_zero_decodes_the_files(tmp_path, monkeypatch):
    """With several processes, rank 0 decodes every image once and the others take its result."""
    import utils
    root = make_image_folder(tmp_path / "train", n_per_class=(2, 2))
    (root / "rough" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    rank0_result = None

    def decode_on_rank_zero_only(*a, **kw):
        raise AssertionError("rank 1 decoded the images")

    def receive_from_rank_zero(objects, src):
        objects[:] = rank0_result
    monkeypatch.setattr(utils, "is_dist_avail_and_initialized", lambda: True)
    monkeypatch.setattr(utils, "get_world_size", lambda: 2)
    monkeypatch.setattr(utils, "get_rank", lambda: 1)
    monkeypatch.setattr(utils.dist, "broadcast_object_list", receive_from_rank_zero)
    monkeypatch.setattr(datasets, "verify_files", decode_on_rank_zero_only)

    good = sorted(str(p) for p in root.rglob("*.png") if p.name != "broken.png")
    rank0_result = [(good, [(str(root / "rough" / "broken.png"), "truncated")]), None]
    dataset = datasets.image_folder(str(root), None, make_args(tmp_path, skip_corrupt=True))
    assert sorted(path for path, _ in dataset.samples) == good

    rank0_result = [None, "1 of 5 image files cannot be read"]
    with pytest.raises(UserError, match="cannot be read"):
        datasets.image_folder(str(root), None, make_args(tmp_path))
