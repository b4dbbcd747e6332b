"""The simulated labelling study driver (benchmarks/labelling_study.py) on a tiny split, one epoch per run."""
import csv
import os
import sys

import numpy as np

from conftest import REPO, write_pattern_image

sys.path.insert(0, str(REPO / "benchmarks"))
import labelling_study  # noqa: E402


def make_video_split(root, rng):
    """train: 3 growth runs of 10 frames (smooth, then rough from frame 6); val/test: one run each."""
    for split, runs in (("train", ("g1", "g2", "g3")), ("val", ("g7",)), ("test", ("g8",))):
        for run in runs:
            for i in range(10 if split == "train" else 6):
                label = "rough" if i >= 6 or (split != "train" and i >= 3) else "smooth"
                (root / split / label).mkdir(parents=True, exist_ok=True)
                write_pattern_image(root / split / label / f"{label}__{run}_{i:04d}.png", label, 40, rng)
    return root


def test_random_subset_is_stratified_and_fixed_per_seed():
    labels = {f"s_{i:04d}.png": "rough" if i < 12 else "smooth" for i in range(60)}
    a = labelling_study.random_subset(labels, 10, seed=0)
    assert a == labelling_study.random_subset(labels, 10, seed=0) != labelling_study.random_subset(labels, 10, seed=1)
    assert len(set(a)) == 10 and sum(labels[n] == "rough" for n in a) == 2  # 10 * 12/60 = 2
    tiny = labelling_study.random_subset(labels, 4, seed=0)
    assert sum(labels[n] == "rough" for n in tiny) == 2  # at least 2 of the rarer class


def test_study_runs_every_arm_without_leaking_labels_or_held_out_frames(tmp_path, monkeypatch):
    split = make_video_split(tmp_path / "split", np.random.default_rng(0))
    out = tmp_path / "study"
    for key, value in dict(EPOCHS="1", INPUT_SIZE="32", BATCH="4", MIN_EPOCH_SIZE="8", NUM_WORKERS="0").items():
        monkeypatch.setenv(key, value)
    argv = ["--split", str(split), "--out", str(out), "--budgets", "4", "8", "--seeds", "0",
            "--pattern", r"(?P<sequence>g\d)_(?P<frame>\d+)", "--extra_test", str(split / "test"),
            "--threshold", "0.5"]
    labelling_study.main(argv)

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["arm"], r["budget"]) for r in rows] == [("random", "4"), ("random", "8"), ("selection", "8"),
                                                        ("pseudo", "4"), ("pseudo", "8")]
    for r in rows:
        assert 0.0 <= float(r["test_macro_f1"]) <= 1.0 and r["extra_macro_f1"] != ""
    labelled = {(r["arm"], r["budget"]): int(r["labelled"]) for r in rows}
    assert labelled[("random", "4")] == labelled[("pseudo", "4")] == 4 and labelled[("random", "8")] == 8
    # select_frames.py returns fewer frames than asked when the rest are near-duplicates (on this tiny pool it
    # depends on the features of a one-epoch model); the study records what was labelled
    grown_to = labelled[("selection", "8")]
    assert 4 < grown_to <= 8 and labelled[("pseudo", "8")] == grown_to
    assert (out / "learning_curve.png").stat().st_size > 0

    # the selector saw neutral names only, and the selection arm grew the random start set
    pool = sorted(p.name for p in (out / "pool").iterdir())
    assert len(pool) == 30 and not any("rough" in n or "smooth" in n for n in pool)
    start = set(labelling_study.labelled_names(out / "seed0" / "random" / "budget4" / "data"))
    grown = set(labelling_study.labelled_names(out / "seed0" / "selection" / "budget8" / "data"))
    assert start < grown and len(grown) == grown_to
    chosen = list(csv.DictReader(open(out / "seed0" / "selection" / "budget8" / "chosen" / "selection.csv")))
    assert len(chosen) == grown_to - 4 and all(r["label"] == "" for r in chosen)  # the oracle fills a copy
    for r in csv.DictReader(open(out / "seed0" / "selection" / "budget8" / "chosen" / "selection_labelled.csv")):
        name = os.path.basename(r["path"])
        assert (out / "seed0" / "selection" / "budget8" / "data" / "train" / r["label"] / name).is_file()

    # no val/test frame reached any training folder
    held_out = {os.stat(p).st_ino for s in ("val", "test") for p in (split / s).rglob("*.png")}
    trained = {os.stat(p).st_ino for p in out.glob("seed0/*/*/data/train/*/*.png")}
    assert held_out and not held_out & trained

    # a second call reuses the finished runs
    logs = {p: p.stat().st_mtime_ns for p in out.glob("seed0/*/*/run.log")}
    labelling_study.main(argv)
    assert len(logs) == 5 and all(p.stat().st_mtime_ns == t for p, t in logs.items())

    # another selection setting adds its own arm next to the earlier rows
    labelling_study.main(argv + ["--arms", "selection", "--uncertain_fraction", "0"])
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert sorted((r["arm"], r["budget"]) for r in rows) == [("pseudo", "4"), ("pseudo", "8"), ("random", "4"),
                                                             ("random", "8"), ("selection", "8"),
                                                             ("selection-u0", "8")]
    assert all(p.stat().st_mtime_ns == t for p, t in logs.items())
    diverse = list(csv.DictReader(open(out / "seed0" / "selection-u0" / "budget8" / "chosen" / "selection.csv")))
    assert len(diverse) == 4 and {r["reason"] for r in diverse} == {"diverse"}


def test_bad_budgets_are_refused(tmp_path):
    split = make_video_split(tmp_path / "split", np.random.default_rng(1))
    for budgets in (["4", "4"], ["2", "8"], ["4", "30"]):
        try:
            labelling_study.main(["--split", str(split), "--out", str(tmp_path / "o"), "--budgets", *budgets])
        except SystemExit as e:
            assert str(e).startswith("error:")
        else:
            raise AssertionError(f"budgets {budgets} accepted")


def test_an_interrupted_split_is_rebuilt_not_reused(tmp_path):
    split = make_video_split(tmp_path / "split", np.random.default_rng(2))
    pool = tmp_path / "pool"
    labels = labelling_study.build_pool(split, pool, r"(?P<sequence>g\d)_(?P<frame>\d+)")
    dst = tmp_path / "random" / "budget4" / "data"
    (dst.parent / "data.partial" / "train" / "rough").mkdir(parents=True)  # left by a killed run
    (dst.parent / "data.partial" / "train" / "rough" / "stale.png").write_bytes(b"")
    names = labelling_study.random_subset(labels, 4, seed=0)
    labelling_study.make_split(split, pool, labels, names, dst)
    assert labelling_study.labelled_names(dst) == names
    assert not (dst.parent / "data.partial").exists()
    assert len(list((dst / "test").rglob("*.png"))) == 6
