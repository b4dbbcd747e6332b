"""Frame selection for labelling (rheed/selection.py, scripts/select_frames.py, scripts/label_frames.py)."""
import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from conftest import run_script_main, save_random_classifier, write_pattern_image
from rheed import selection
from rheed.errors import UserError


def pool(n_sequences=4, n_frames=40, dim=16, seed=0):
    """Frames of a few videos whose features drift slowly along each video (neighbours look alike)."""
    rng = np.random.default_rng(seed)
    frames, features = [], []
    for s in range(n_sequences):
        walk = np.cumsum(rng.normal(0, 0.15, (n_frames, dim)), axis=0) + rng.normal(0, 1, dim)
        for f in range(n_frames):
            frames.append(selection.PoolFrame(f"run{s}/seq{s}_{f:04d}.png", f"run{s}/seq{s}", f))
            features.append(walk[f])
    probs = rng.dirichlet([1, 1], len(frames))
    return frames, probs, np.array(features)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_near_duplicates_budget_and_determinism(seed):
    frames, probs, features = pool(seed=seed)
    picks = selection.select(frames, probs, features, budget=20, min_gap=5, max_similarity=0.95, seed=seed)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    chosen = [i for i, _ in picks]
    assert len(picks) == 20 or all(selection.is_near_duplicate(k, chosen, frames, unit, 5, 0.95)
                                   for k in range(len(frames)) if k not in chosen)  # the pool ran out
    assert picks == selection.select(frames, probs, features, budget=20, min_gap=5, max_similarity=0.95, seed=seed)
    for (i, _), (j, _) in itertools.combinations(picks, 2):
        a, b = frames[i], frames[j]
        assert not (a.sequence == b.sequence and abs(a.frame - b.frame) <= 5), (a, b)
        assert unit[i] @ unit[j] < 0.95
    reasons = [reason for _, reason in picks]
    assert reasons.count("uncertain") == 10 and reasons[:10] == ["uncertain"] * 10


def test_most_uncertain_frame_comes_first_and_budget_can_exceed_the_pool():
    frames, probs, features = pool(n_sequences=1, n_frames=30)
    probs[17] = [0.5, 0.5]
    picks = selection.select(frames, probs, features, budget=100, min_gap=3, max_similarity=1.01)
    assert picks[0] == (17, "uncertain")
    assert 0 < len(picks) <= 30 // 4 + 1  # every chosen frame blocks its 3 neighbours on each side
    with pytest.raises(UserError, match="--budget"):
        selection.select(frames, probs, features, budget=0)


def test_diverse_picks_spread_over_the_videos():
    frames, probs, features = pool(n_sequences=4, n_frames=40)
    picks = selection.select(frames, probs, features, budget=8, uncertain_fraction=0.0, min_gap=5)
    assert {frames[i].sequence for i, _ in picks} == {f"run{s}/seq{s}" for s in range(4)}


def write_selection_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=selection.SELECTION_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in selection.SELECTION_COLUMNS})


def test_labelled_frames_are_placed_and_nothing_is_overwritten(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "video"
    src.mkdir()
    for i in range(3):
        write_pattern_image(src / f"seq1_{i:04d}.png", "rough", 32, rng)
    sources = {p.name: p.read_bytes() for p in src.iterdir()}
    table = tmp_path / "selection.csv"
    write_selection_csv(table, [{"path": src / "seq1_0000.png", "label": "island_rough"},
                                {"path": src / "seq1_0001.png", "label": "layer_smooth"},
                                {"path": src / "seq1_0002.png", "label": ""}])
    dst = tmp_path / "data_rheed"
    counts = selection.place_labelled(table, dst, ["layer_smooth", "island_smooth", "island_rough"])
    assert counts == {"island_rough": 1, "layer_smooth": 1}
    assert (dst / "island_rough" / "seq1_0000.png").read_bytes() == sources["seq1_0000.png"]
    with pytest.raises(UserError, match="already exists"):
        selection.place_labelled(table, dst, ["layer_smooth", "island_smooth", "island_rough"])
    write_selection_csv(table, [{"path": src / "seq1_0002.png", "label": "rough-ish"}])
    with pytest.raises(UserError, match="unknown label.*rough-ish"):
        selection.place_labelled(table, dst, ["layer_smooth", "island_smooth", "island_rough"])
    assert not (dst / "rough-ish").exists()
    assert {p.name: p.read_bytes() for p in src.iterdir()} == sources


def test_cli_selects_from_a_folder_and_labels(tmp_path):
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    rng = np.random.default_rng(1)
    video = tmp_path / "video"
    video.mkdir()
    for i in range(30):
        write_pattern_image(video / f"run7_{i:05d}.png", "rough" if i >= 15 else "smooth", 48, rng)
    out = tmp_path / "sel"
    run_script_main("select_frames", ["--checkpoint", str(ckpt), "--pool", str(video), "--budget", "4",
                                      "--out", str(out), "--min_gap", "3"])
    rows = list(csv.DictReader(open(out / "selection.csv")))
    assert len(rows) == 4 and (out / "selection.png").stat().st_size > 0
    frames = sorted(int(r["frame"]) for r in rows)
    assert all(b - a > 3 for a, b in zip(frames, frames[1:]))
    with pytest.raises(SystemExit, match="exists"):
        run_script_main("select_frames", ["--checkpoint", str(ckpt), "--pool", str(video), "--budget", "4",
                                          "--out", str(out)])
    for r in rows:
        r["label"] = "island_rough" if int(r["frame"]) >= 15 else "island_smooth"
    write_selection_csv(out / "selection.csv", rows)
    run_script_main("label_frames", ["--csv", str(out / "selection.csv"), "--dst", str(tmp_path / "data")])
    placed = sorted(p.name for p in (tmp_path / "data").rglob("*.png"))
    assert placed == sorted(f"run7_{f:05d}.png" for f in frames)


def test_cli_selects_from_a_tiff_stack_and_a_video_and_exports_the_chosen_frames(tmp_path):
    import av
    import tifffile
    from PIL import Image

    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    rng = np.random.default_rng(2)
    for i in range(20):
        write_pattern_image(tmp_path / f"f{i}.png", "rough" if i >= 10 else "smooth", 48, rng)
    pages = [np.asarray(Image.open(tmp_path / f"f{i}.png")) for i in range(20)]
    tifffile.imwrite(tmp_path / "growth.tif", np.stack(pages).astype(np.uint16) * 16)  # a 12-bit stack
    with av.open(str(tmp_path / "growth2.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "gray"
        for page in pages:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(page, format="gray")))
        container.mux(stream.encode())
    out = tmp_path / "sel"
    run_script_main("select_frames", ["--checkpoint", str(ckpt), "--pool", str(tmp_path / "growth.tif"),
                                      str(tmp_path / "growth2.mkv"), "--budget", "6", "--out", str(out),
                                      "--min_gap", "2"])
    rows = list(csv.DictReader(open(out / "selection.csv")))
    assert len(rows) == 6
    for r in rows:
        source = tmp_path / ("growth.tif" if r["sequence"].endswith(".tif") else "growth2.mkv")
        assert r["sequence"] == str(source)
        assert r["path"] == str(out / "frames" / f"{source.stem}_{int(r['frame']):06d}.png")
        exported = np.asarray(Image.open(r["path"]))
        assert exported.shape == (48, 48) and exported.dtype == np.uint8 and exported.max() > 100
    for sequence in {r["sequence"] for r in rows}:
        numbers = sorted(int(r["frame"]) for r in rows if r["sequence"] == sequence)
        assert all(b - a > 2 for a, b in zip(numbers, numbers[1:]))
    assert sorted(p.name for p in (out / "frames").iterdir()) == sorted(Path(r["path"]).name for r in rows)
    for r in rows:
        r["label"] = "island_rough" if int(r["frame"]) >= 10 else "island_smooth"
    write_selection_csv(out / "selection.csv", rows)
    run_script_main("label_frames", ["--csv", str(out / "selection.csv"), "--dst", str(tmp_path / "data")])
    assert len(list((tmp_path / "data").rglob("*.png"))) == 6


def test_mutual_information_is_zero_when_passes_agree_and_positive_when_they_do_not():
    agree = np.array([[[0.9, 0.1], [0.5, 0.5]]] * 4)
    assert selection.mutual_information(agree) == pytest.approx([0.0, 0.0], abs=1e-12)
    split = np.array([[[0.99, 0.01]], [[0.01, 0.99]]])  # confident passes that contradict each other
    assert selection.mutual_information(split)[0] == pytest.approx(np.log(2) - selection.entropies(split[0])[0])
    frames = [selection.PoolFrame(f"v/s_{i:03d}.png", "v/s", 10 * i) for i in range(3)]
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.8, 0.2]])
    picks = selection.select(frames, probs, np.eye(3), budget=1, uncertain_fraction=1.0,
                             uncertainty=np.array([0.0, 0.3, 0.1]))
    assert picks == [(1, "uncertain")]  # the given uncertainty, not the margin, ranks the frames


def test_mc_drop_path_passes_differ_and_need_a_stochastic_model(tmp_path):
    from rheed.inference import load_classifier
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    rng = np.random.default_rng(4)
    names = ["alpha.png", "beta.png", "gamma.png"]  # no frame numbers: never temporal neighbours
    for name in names:
        write_pattern_image(tmp_path / name, "rough", 48, rng)
    deterministic = load_classifier(ckpt)
    images = [deterministic.loader(str(tmp_path / name)) for name in names]
    with pytest.raises(UserError, match="drop_path > 0"):
        deterministic.mc_probs(images, 2)
    stochastic = load_classifier(ckpt, drop_path=0.3)
    runs = stochastic.mc_probs(images, 4)
    assert runs.shape == (4, 3, 2) and np.allclose(runs.sum(axis=2), 1.0, atol=1e-5)
    assert np.abs(runs[0] - runs[1]).max() > 1e-4  # passes differ
    assert not any(m.training for m in stochastic.model.modules())  # back in eval mode
    assert np.allclose(stochastic.predict_images(images), deterministic.predict_images(images), atol=1e-5)
    out = tmp_path / "sel"
    run_script_main("select_frames", ["--checkpoint", str(ckpt), "--pool", str(tmp_path), "--budget", "2",
                                      "--out", str(out), "--mc_passes", "3",
                                      "--max_similarity", "1.1"])
    rows = list(csv.DictReader(open(out / "selection.csv")))
    assert len(rows) == 2 and all(float(r["mc_disagreement"]) >= 0 for r in rows)
