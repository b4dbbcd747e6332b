import csv
import hashlib
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from rheed.errors import UserError
from rheed.naming import DEFAULT_PATTERN, count_sequences, parse_sequence_frame, sort_by_frame
from rheed.split import MANIFEST_COLUMNS, collect_frames, exact_counts, plan_split, split_dataset

SPLITS = ("train", "val", "test")


def write_runs(root: Path, island_runs=((14, 17), (20, 12), (9, 25), (16, 16)), layer_runs=(30, 27),
               size=32, seed=0) -> Path:
    """Growth videos: island runs seq001.. with consecutive frame numbers, the first n_smooth frames in
    island_smooth and the next n_rough in island_rough; layer runs seq101.. in layer_smooth. Each frame
    drifts slowly from its predecessor so that neighbours are near-duplicates."""
    rng = np.random.default_rng(seed)
    for c in ("layer_smooth", "island_smooth", "island_rough"):
        (root / c).mkdir(parents=True, exist_ok=True)

    def video(n):
        img = rng.normal(120, 30, (size, size))
        for _ in range(n):
            img = img + rng.normal(0, 3, img.shape)
            yield np.clip(img, 0, 255).astype(np.uint8)

    for r, (n_s, n_r) in enumerate(island_runs, start=1):
        for t, img in enumerate(video(n_s + n_r)):
            cls = "island_smooth" if t < n_s else "island_rough"
            Image.fromarray(img, mode="L").save(root / cls / f"seq{r:03d}_{t + 100:06d}.png")
    for r, n in enumerate(layer_runs, start=101):
        for t, img in enumerate(video(n)):
            Image.fromarray(img, mode="L").save(root / "layer_smooth" / f"seq{r:03d}_{t:06d}.png")
    return root


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def read_manifest(dst: Path):
    with open(dst / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_gap_rule(rows, gap, classes=("island_smooth", "island_rough")):
    """No frame of one split within `gap` frames of a frame of another split in the same sequence,
    across the fine classes of that sequence."""
    by_seq = defaultdict(list)
    for r in rows:
        if r["fine_class"] in classes:
            by_seq[r["sequence"]].append((int(r["frame"]), r["split"]))
    checked = 0
    for frames in by_seq.values():
        for f, s in frames:
            if s == "train":
                continue
            checked += 1
            for g, t in frames:
                if t != s:
                    assert abs(f - g) > gap, (f, s, g, t)
    return checked


def test_parse_sequence_frame():
    assert parse_sequence_frame("seq001_000123.png") == ("seq001", 123)
    assert parse_sequence_frame("data/island_rough/seq003_000120.tif") == ("seq003", 120)
    assert parse_sequence_frame("run7-frame-0042_raw.png") == ("run7-frame", 42)
    assert parse_sequence_frame("0042.png") == ("", 42)
    assert parse_sequence_frame("no_digits_here.png") == (None, None)
    custom = r"(?P<sequence>run\d+)_t(?P<frame>\d+)"
    assert parse_sequence_frame("run7_t0042_cam2.tif", custom) == ("run7", 42)
    assert parse_sequence_frame("other.tif", custom) == (None, None)
    assert parse_sequence_frame("x_5.png", r"_(?P<frame>\d+)") == ("", 5)
    with pytest.raises(UserError, match="frame"):
        parse_sequence_frame("a1.png", r"(?P<seq>\d+)")
    with pytest.raises(UserError, match="invalid --pattern"):
        parse_sequence_frame("a1.png", r"(?P<frame>\d+")
    assert DEFAULT_PATTERN
    assert sort_by_frame(["b_10.png", "b_9.png", "a_2.png", "zzz.png"]) == ["a_2.png", "b_9.png", "b_10.png", "zzz.png"]


def test_count_sequences_counts_runs_and_lone_frames():
    names = ["val/rough/island_rough__seq013_000005.png", "val/rough/island_rough__seq013_000006.png",
             "val/rough/run7_000003.tif", "val/smooth/run7_000001.tif", "val/smooth/run7_000002.tif",
             "val/smooth/reference.png", "val/smooth/other.png"]
    assert count_sequences(names) == 4     # island_rough__seq013, run7 (both classes), two lone frames
    assert count_sequences([]) == 0


def test_exact_counts():
    for n in range(0, 60):
        counts = exact_counts((0.7, 0.15, 0.15), n)
        assert sum(counts) == n
        assert all(abs(c - r * n) < 1 for c, r in zip(counts, (0.7, 0.15, 0.15)))


@pytest.mark.parametrize("gap,ratios", [(3, (0.7, 0.15, 0.15)), (0, (0.7, 0.2, 0.1)), (5, (0.6, 0.2, 0.2))])
def test_plan_ratios_and_gap(tmp_path, gap, ratios):
    frames = collect_frames(write_runs(tmp_path / "src"))
    summary = plan_split(frames, ratios, gap=gap, seed=0)
    assert summary["gap_check"]["passed"] and summary["temporal_classes"] == ["island_rough", "island_smooth"]
    for c in ("layer_smooth", "island_smooth", "island_rough"):
        kept = [f.split for f in frames if f.fine_class == c and f.split is not None]
        counts = Counter(kept)
        for s, r in zip(SPLITS, ratios):
            assert abs(counts[s] - r * len(kept)) <= 1, (c, counts, len(kept))
    rows = [{"fine_class": f.fine_class, "sequence": f.sequence, "frame": f.frame, "split": f.split}
            for f in frames if f.split is not None]
    assert assert_gap_rule(rows, gap) > 10
    # island classes: each sequence keeps contiguous blocks; the class boundary is test|test
    left_out = sum(f.split is None for f in frames if f.fine_class.startswith("island"))
    pieces = [n for run in ((14, 17), (20, 12), (9, 25), (16, 16)) for n in run]
    assert left_out == sum(2 * gap for n in pieces if n >= 2 * gap + 3)  # 2 inner boundaries per long piece
    for seq in ("seq001", "seq002"):
        timeline = [f.split for f in sorted(frames, key=lambda f: f.frame)
                    if f.sequence == seq and f.split is not None]
        changes = sum(a != b for a, b in zip(timeline, timeline[1:]))
        assert changes <= 4
    # layer_smooth is random by default: every frame kept
    assert all(f.split for f in frames if f.fine_class == "layer_smooth")


def test_short_pieces_and_by_sequence(tmp_path):
    src = write_runs(tmp_path / "src", island_runs=((4, 30), (25, 3), (20, 20), (18, 22)), layer_runs=(12,))
    frames = collect_frames(src)
    plan_split(frames, (0.7, 0.15, 0.15), gap=3, seed=0)
    rows = [{"fine_class": f.fine_class, "sequence": f.sequence, "frame": f.frame, "split": f.split}
            for f in frames if f.split is not None]
    assert_gap_rule(rows, 3)
    # too short to cut: whole, in the split that needs frames most (train), which also opens the
    # rough frames of that run, so no frames are lost at the class boundary
    short = [f.split for f in frames if f.sequence == "seq001" and f.fine_class == "island_smooth"]
    assert set(short) == {"train"}
    rough = [f.split for f in sorted(frames, key=lambda f: f.frame)
             if f.sequence == "seq001" and f.fine_class == "island_rough"]
    assert rough[0] == "train" and rough[:10] == ["train"] * 10
    for c in ("island_smooth", "island_rough"):
        counts = Counter(f.split for f in frames if f.fine_class == c and f.split)
        n = sum(counts.values())
        assert all(abs(counts[s] - r * n) <= 1 for s, r in zip(SPLITS, (0.7, 0.15, 0.15))), (c, counts)

    frames = collect_frames(src)
    plan_split(frames, (0.5, 0.25, 0.25), gap=3, seed=1, by_sequence=True)
    assert all(f.split for f in frames)  # nothing is left out
    per_seq = defaultdict(set)
    for f in frames:
        if f.fine_class != "layer_smooth":
            per_seq[f.sequence].add(f.split)
    assert all(len(v) == 1 for v in per_seq.values())  # whole runs, both island classes together
    assert set().union(*per_seq.values()) == set(SPLITS)


def test_temporal_layer_and_frames_csv(tmp_path):
    src = write_runs(tmp_path / "src", island_runs=((10, 10),), layer_runs=(40,))
    frames = collect_frames(src)
    plan_split(frames, (0.7, 0.15, 0.15), gap=2, seed=0,
               temporal_classes=["layer_smooth", "island_smooth", "island_rough"])
    layer = sorted((f.frame, f.split) for f in frames if f.fine_class == "layer_smooth")
    kept = [s for _, s in layer if s]
    assert kept == sorted(kept, key=SPLITS.index)  # train block, then val, then test
    assert sum(s is None for _, s in layer) == 4
    # sequence/frame from a CSV override the file names
    table = tmp_path / "frames.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "sequence", "frame"])
        w.writerow(["island_rough/seq001_000110.png", "runA", "7"])
        w.writerow(["seq101_000003.png", "runB", "99"])
    frames = {f.rel: f for f in collect_frames(src, frames_csv=str(table))}
    assert (frames["seq001_000110.png"].sequence, frames["seq001_000110.png"].frame) == ("runA", 7)
    assert (frames["seq101_000003.png"].sequence, frames["seq101_000003.png"].frame) == ("runB", 99)
    assert frames["seq001_000111.png"].frame == 111


def test_split_dataset_end_to_end(tmp_path, capsys):
    src = write_runs(tmp_path / "data_rheed")
    before = tree_hash(src)
    dst = tmp_path / "split"
    report = split_dataset(str(src), str(dst), gap=3, seed=0)
    assert tree_hash(src) == before  # source untouched
    rows = read_manifest(dst)
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    for r in rows:
        assert (dst / r["path"]).is_file()
        assert r["path"] == f"{r['split']}/{r['label']}/{r['fine_class']}__{Path(r['source']).name}"
        assert r["label"] == ("rough" if r["fine_class"] == "island_rough" else "smooth")
        assert (dst / r["path"]).read_bytes() == Path(r["source"]).read_bytes()
        assert (r["sequence"], int(r["frame"])) == parse_sequence_frame(r["source"])
    assert {p.name for p in dst.iterdir()} == {"train", "val", "test", "manifest.csv", "split_report.json",
                                               "split_report.txt"}
    assert sorted(p.name for p in (dst / "test").iterdir()) == ["rough", "smooth"]
    assert report["link_method"] == {"hardlink": len(rows)}
    assert assert_gap_rule(rows, 3) > 0
    saved = json.loads((dst / "split_report.json").read_text())
    assert saved["gap_check"]["passed"] and saved["counts"] == report["counts"]
    sim = saved["similarity"]
    assert sim["test"]["n"] == sum(r["split"] == "test" for r in rows)
    assert -1 <= sim["test"]["mean"] <= sim["test"]["max"] <= 1 and len(sim["test"]["top_pairs"]) == 10
    # layer_smooth is split at random, so its neighbours are the nearest pairs and same-sequence
    assert saved["random_class_neighbours"]["layer_smooth"] > 0
    text = (dst / "split_report.txt").read_text()
    assert "gap check: PASSED" in text and "island_rough" in text and "most similar" in text
    assert "gap check: PASSED" in capsys.readouterr().out

    # same seed -> identical manifest; --overwrite only replaces what the split wrote
    (dst / "my_notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="--overwrite"):
        split_dataset(str(src), str(dst), gap=3, seed=0, similarity=False, verbose=False)
    old = (dst / "manifest.csv").read_bytes()
    split_dataset(str(src), str(dst), gap=3, seed=0, overwrite=True, similarity=False, verbose=False)
    assert (dst / "manifest.csv").read_bytes() == old
    assert (dst / "my_notes.txt").read_text() == "keep me"
    split_dataset(str(src), str(dst), gap=3, seed=5, overwrite=True, similarity=False, verbose=False,
                  classes="fine", ratios=(7, 2, 1))
    rows5 = read_manifest(dst)
    assert (dst / "manifest.csv").read_bytes() != old
    assert {r["label"] for r in rows5} == {"layer_smooth", "island_smooth", "island_rough"}
    assert not list((dst / "train").glob("smooth"))  # old binary folders are gone
    assert tree_hash(src) == before


def test_split_refusals(tmp_path):
    src = write_runs(tmp_path / "data_rheed", island_runs=((8, 8),), layer_runs=(10,))
    with pytest.raises(UserError, match="must not be"):
        split_dataset(str(src), str(src / "out"))
    foreign = tmp_path / "foreign"
    (foreign / "train").mkdir(parents=True)
    with pytest.raises(UserError, match="refusing"):
        split_dataset(str(src), str(foreign), overwrite=True)
    assert (foreign / "train").is_dir()
    (src / "mystery").mkdir()
    Image.new("L", (8, 8)).save(src / "mystery" / "a_1.png")
    with pytest.raises(UserError, match="unknown class folder"):
        split_dataset(str(src), str(tmp_path / "o"))
    with pytest.raises(UserError, match="ratios"):
        split_dataset(str(src), str(tmp_path / "o"), ratios=(1, 1))
    with pytest.raises(UserError, match="source folder not found"):
        split_dataset(str(tmp_path / "nope"), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_split_cli(tmp_path, capsys):
    src = write_runs(tmp_path / "data_rheed", island_runs=((12, 14), (15, 11)), layer_runs=(20,))
    before = tree_hash(src)
    dst = tmp_path / "data_rheed_split"
    args = ["--src", src, "--dst", dst, "--seed", "3", "--gap", "2", "--ratios", "0.7", "0.15", "0.15"]
    proc = run_cli(["scripts/split_dataset_simple.py", *args], check=True)
    assert "gap check: PASSED" in proc.stdout and "wrote" in proc.stdout
    first = (dst / "manifest.csv").read_bytes()
    proc = run_cli(["scripts/split_dataset_simple.py", *args])
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # the same entry point in-process (saves interpreter start-ups)
    from scripts.split_dataset_simple import main
    main([str(a) for a in args] + ["--overwrite", "--no-similarity"])
    assert (dst / "manifest.csv").read_bytes() == first
    assert tree_hash(src) == before
    with pytest.raises(SystemExit) as exc:
        main(["--src", str(tmp_path / "missing"), "--dst", str(tmp_path / "x")])
    assert str(exc.value).startswith("error: source folder not found")


def test_split_warns_when_a_split_gets_no_frame_of_a_class(tmp_path, capsys):
    src = write_runs(tmp_path / "data_rheed", island_runs=((6, 4),), layer_runs=(30,))
    report = split_dataset(str(src), str(tmp_path / "split"), gap=1, seed=0)
    assert report["missing_labels"], report["counts"]
    split, missing = next(iter(report["missing_labels"].items()))
    assert missing == ["rough"] and not (tmp_path / "split" / split / "rough").exists()
    assert f"warning: {split} has no frames of class rough" in capsys.readouterr().out
    full = split_dataset(str(write_runs(tmp_path / "big")), str(tmp_path / "split_big"), gap=3, seed=0)
    assert full["missing_labels"] == {}


def test_flags_take_underscores_and_keep_dashed_aliases():
    from conftest import load_script
    parser = load_script("split_dataset_simple").get_args_parser()
    for spelling in (["--by_sequence", "--temporal_layer", "--no_similarity", "--frames_csv", "f.csv"],
                     ["--by-sequence", "--temporal-layer", "--no-similarity", "--frames-csv", "f.csv"]):
        args = parser.parse_args(spelling)
        assert args.by_sequence and args.temporal_layer and args.no_similarity and args.frames_csv == "f.csv"
    assert "--by_sequence" in parser.format_help()


def test_grouped_k_fold_tests_every_frame_once_and_never_splits_a_sequence(tmp_path):
    from conftest import load_script
    src = tmp_path / "data_rheed"
    rng = np.random.default_rng(0)
    for s in range(6):  # 6 island runs and 6 layer runs
        for f in range(12):
            fine = "island_smooth" if f < 6 else "island_rough"
            (src / fine).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(src / fine / f"seq{s:03d}_{f:06d}.png")
        (src / "layer_smooth").mkdir(parents=True, exist_ok=True)
        for f in range(8):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                src / "layer_smooth" / f"run{s:03d}_{f:06d}.png")
    dst = tmp_path / "folds"
    load_script("split_dataset_simple").main(["--src", str(src), "--dst", str(dst), "--folds", "3",
                                              "--no_similarity"])
    tested, test_sequences = [], []
    for k in range(3):
        rows = list(csv.DictReader(open(dst / f"fold_{k}" / "manifest.csv")))
        assert len(rows) == 6 * 12 + 6 * 8  # no frame left out
        by_split = {s: {r["sequence"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
        assert not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
        assert not (by_split["train"] & by_split["val"])
        tested += [r["source"] for r in rows if r["split"] == "test"]
        test_sequences.append(by_split["test"])
        assert {"rough", "smooth"} <= {p.name for p in (dst / f"fold_{k}" / "test").iterdir()}
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 6 * 12 + 6 * 8
    assert all(not (a & b) for a, b in itertools.combinations(test_sequences, 2))
    with pytest.raises(SystemExit, match="at least 3 folds"):
        load_script("split_dataset_simple").main(["--src", str(src), "--dst", str(tmp_path / "f2"), "--folds", "2"])


def test_a_split_with_ratio_zero_is_not_written(tmp_path, capsys):
    src = write_runs(tmp_path / "data_rheed")
    dst = tmp_path / "split"
    split_dataset(str(src), str(dst), gap=3, seed=0, similarity=False)  # an earlier three-way split
    assert (dst / "test").is_dir()
    report = split_dataset(str(src), str(dst), ratios=(9, 1, 0), by_sequence=True, classes="fine", seed=0,
                           overwrite=True, similarity=False)
    assert report["unused_splits"] == ["test"] and report["missing_labels"] == {}
    assert report["counts"]["test"] == {} and sum(report["counts"]["val"].values()) > 0
    assert sorted(p.name for p in dst.iterdir()) == ["manifest.csv", "split_report.json", "split_report.txt",
                                                     "train", "val"]  # the old test/ is gone, no empty one
    assert "warning: test" not in capsys.readouterr().out
