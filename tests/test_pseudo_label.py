"""Pseudo-labelling for self-training (rheed/pseudo_label.py, scripts/pseudo_label.py)."""
import csv
import os

import numpy as np
import pytest

from conftest import run_script_main, save_random_classifier, write_pattern_image
from rheed import pseudo_label
from rheed.selection import PoolFrame


def video(n, sequence="run1/seq1", start=0):
    return [PoolFrame(f"{sequence}_{i:04d}.png", sequence, i) for i in range(start, start + n)]


def test_a_confident_frame_needs_agreeing_neighbours():
    frames = video(7)
    p_rough = np.array([0.99, 0.99, 0.99, 0.99, 0.30, 0.99, 0.99])  # frame 4 disagrees
    probs = np.stack([p_rough, 1 - p_rough], axis=1)
    predicted, conf, n, accepted = pseudo_label.temporal_accept(frames, probs, threshold=0.9, window=1)
    assert predicted.tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert n.tolist() == [2, 3, 3, 3, 3, 3, 2]
    assert accepted.tolist() == [True, True, True, False, False, False, True]
    assert conf[0] == pytest.approx(0.99) and conf[3] == pytest.approx((0.99 + 0.99 + 0.30) / 3)
    # window 0: each frame alone
    assert pseudo_label.temporal_accept(frames, probs, 0.9, 0)[3].tolist() == [True] * 4 + [False] + [True] * 2


def test_the_window_mean_must_reach_the_threshold_and_sequences_stay_apart():
    a, b = video(3, "run1/seq1"), video(3, "run2/seq1")
    frames = a + b + [PoolFrame("loose.png", "x/", None)]
    p_rough = np.array([0.97, 0.90, 0.97, 0.02, 0.02, 0.02, 0.96])
    probs = np.stack([p_rough, 1 - p_rough], axis=1)
    _, conf, n, accepted = pseudo_label.temporal_accept(frames, probs, threshold=0.95, window=1)
    assert n.tolist() == [2, 3, 2, 2, 3, 2, 1]  # run2 frames are not neighbours of run1 frames
    assert accepted.tolist() == [False, False, False, True, True, True, True]
    assert conf[1] == pytest.approx((0.97 + 0.90 + 0.97) / 3)


def make_split(root, rng):
    for split, frames in (("train", range(0, 8)), ("val", range(40, 44)), ("test", range(50, 54))):
        for i in frames:
            label = "rough" if i % 2 else "smooth"
            (root / split / label).mkdir(parents=True, exist_ok=True)
            write_pattern_image(root / split / label / f"lab_{i:05d}.png", label, 48, rng)


def test_cli_writes_a_new_split_with_pseudo_labels_in_train_only(tmp_path):
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    rng = np.random.default_rng(3)
    split = tmp_path / "split"
    make_split(split, rng)
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(20):
        write_pattern_image(pool / f"run9_{i:05d}.png", "rough" if i >= 10 else "smooth", 48, rng)
    os.link(split / "test" / "rough" / "lab_00051.png", pool / "lab_00051.png")  # a test frame in the pool
    os.link(split / "train" / "rough" / "lab_00001.png", pool / "lab_00001.png")  # an already labelled frame
    out = tmp_path / "round1"
    run_script_main("pseudo_label", ["--checkpoint", str(ckpt), "--pool", str(pool), "--split", str(split),
                                     "--out", str(out), "--threshold", "0.5", "--window", "0"])
    rows = list(csv.DictReader(open(out / "pseudo_labels.csv")))
    assert len(rows) == 20 and tuple(rows[0]) == pseudo_label.PSEUDO_COLUMNS
    assert all(r["accepted"] == "1" for r in rows)  # threshold 0.5, window 0: every frame
    pseudo = sorted(p.name for p in (out / "train").rglob("pseudo__*"))
    assert pseudo == sorted(f"pseudo__pool__run9_{i:05d}.png" for i in range(20))
    for r in rows:  # each accepted frame sits in the folder of its predicted class
        assert (out / "train" / r["predicted"] / f"pseudo__pool__{os.path.basename(r['path'])}").is_file()
    for name in ("val", "test"):  # held-out splits unchanged
        assert sorted(p.relative_to(out) for p in (out / name).rglob("*.png")) == \
            sorted(p.relative_to(split) for p in (split / name).rglob("*.png"))
    assert len(list((out / "train").rglob("lab_*.png"))) == 8

    # a stricter round keeps fewer; an existing round is never overwritten
    strict = tmp_path / "round1_strict"
    run_script_main("pseudo_label", ["--checkpoint", str(ckpt), "--pool", str(pool), "--split", str(split),
                                     "--out", str(strict), "--threshold", "1.0", "--window", "2"])
    assert len(list((strict / "train").rglob("pseudo__*"))) < 20
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(SystemExit, match="not empty"):
        run_script_main("pseudo_label", ["--checkpoint", str(ckpt), "--pool", str(pool), "--split", str(split),
                                         "--out", str(out)])
    assert sorted(p.name for p in out.rglob("*")) == before
    with pytest.raises(SystemExit, match="--threshold must be between 0.5 and 1"):
        run_script_main("pseudo_label", ["--checkpoint", str(ckpt), "--pool", str(pool), "--split", str(split),
                                         "--out", str(tmp_path / "x"), "--threshold", "0.2"])
