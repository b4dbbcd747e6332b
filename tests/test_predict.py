"""scripts/predict.py, rheed.predict, rheed.frames and rheed.watch: per-frame predictions, transition detection, input kinds, watch mode."""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_cli
from rheed.errors import UserError

SIZE = 32        # frames and model input (<= 32 px: the evaluation transform is ToTensor + Normalize only)
N_FRAMES = 60
TRANSITION = 30  # ground truth: frames >= 30 are rough
# Causal smoothing over 5 frames delays the smoothed curve by about 2 frames; the pattern morphs over ~2
# frames around the transition. Stated tolerance: |detected - true| <= 3 frames.
TOLERANCE = 3


def growth_frames(n: int, transition: int, size: int = SIZE, seed: int = 0) -> list[np.ndarray]:
    """A growth run as uint8 frames: vertical streaks (smooth) morphing into a spot grid (rough) at `transition`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = size / 6
    phase = rng.uniform(0, period)
    streaks = np.exp(-(((xx - phase) % period - period / 2) ** 2) / 4.0)
    spots = np.exp(-((((xx - phase) % period - period / 2) ** 2) + (((yy - phase) % period - period / 2) ** 2)) / 6.0)
    frames = []
    for i in range(n):
        rough = 1.0 / (1.0 + np.exp(-(i - transition + 0.5)))
        img = ((1 - rough) * streaks + rough * spots) * rng.uniform(150, 230) + rng.normal(0, 8, streaks.shape) + 20
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def write_folder(folder, frames, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame, mode="L").save(folder / (names[i] if names else f"run7_{i}.png"))
    return folder


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny atto trained in-process for 15 steps on three generated runs, saved as a fine-tune checkpoint."""
    import argparse

    import timm_compat  # noqa: F401
    import datasets
    from models import convnextv2
    from rheed.imageio import frame_to_rgb

    args = {"model": "convnextv2_atto", "nb_classes": 2, "input_size": SIZE, "crop_pct": None,
            "imagenet_default_mean_and_std": True, "bit_scaling": "percentile", "data_set": "RHEED"}
    transform = datasets.build_transform(False, argparse.Namespace(**args))
    x, y = [], []
    for seed in range(3):
        for i, frame in enumerate(growth_frames(40, 20, seed=seed)):
            x.append(transform(frame_to_rgb(frame)))
            y.append(0 if i >= 20 else 1)  # class_names ['rough', 'smooth'] (ImageFolder order)
    x, y = torch.stack(x), torch.tensor(y)

    torch.manual_seed(0)
    model = convnextv2.convnextv2_atto(num_classes=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        idx = torch.randint(0, len(x), (16,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("predict_ckpt") / "checkpoint-best.pth"
    torch.save({"model": model.state_dict(), "args": args, "epoch": 0, "class_names": ["rough", "smooth"]}, path)
    return path


@pytest.fixture(scope="module")
def classifier(checkpoint):
    from rheed.inference import load_classifier
    return load_classifier(checkpoint)


@pytest.fixture(scope="module")
def run_frames():
    return growth_frames(N_FRAMES, TRANSITION, seed=7)


def test_cli_growth_run_timeline(checkpoint, run_frames, tmp_path):
    # Unpadded frame numbers: lexical order (run7_10 before run7_2) differs from frame order.
    folder = write_folder(tmp_path / "run7", run_frames)
    proc = run_cli(["scripts/predict.py", "--checkpoint", checkpoint, "--input", folder, "--batch_size", 16,
                    "--no_progress"], check=True)
    out = tmp_path / "run7_predictions"  # default: next to the input
    rows = read_csv(out / "predictions.csv")
    assert list(rows[0]) == ["frame", "source", "p_rough", "label", "p_rough_smoothed"]
    assert [int(r["frame"]) for r in rows] == list(range(N_FRAMES))
    assert [os.path.basename(r["source"]) for r in rows] == [f"run7_{i}.png" for i in range(N_FRAMES)]
    p = np.array([float(r["p_rough"]) for r in rows])
    labels = [r["label"] for r in rows]
    assert set(labels) <= {"rough", "smooth"}
    assert [lbl == "rough" for lbl in labels] == list(p >= 0.5)
    truth = np.arange(N_FRAMES) >= TRANSITION
    assert np.mean((p >= 0.5) == truth) >= 0.9

    # Smoothed column = causal mean of the last 5 raw values (the documented default).
    smoothed = np.array([float(r["p_rough_smoothed"]) for r in rows])
    expected = [p[max(0, i - 4):i + 1].mean() for i in range(N_FRAMES)]
    np.testing.assert_allclose(smoothed, expected, atol=2e-6)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == N_FRAMES
    assert summary["input_kind"] == "folder"
    assert abs(summary["transition_frame"] - TRANSITION) <= TOLERANCE
    assert summary["fraction_positive"] == pytest.approx(np.mean(p >= 0.5))
    assert abs(summary["fraction_positive"] - 0.5) <= 0.1
    assert summary["model"] == "convnextv2_atto" and summary["checkpoint"] == str(checkpoint)
    assert (summary["smooth_window"], summary["persist"], summary["threshold"]) == (5, 10, 0.5)
    assert (out / "timeline.png").stat().st_size > 0 and (out / "timeline.pdf").stat().st_size > 0
    assert f"transition frame: {summary['transition_frame']}" in proc.stdout

    # A second run into the same folder is refused; the earlier outputs stay untouched.
    before = (out / "predictions.csv").read_bytes()
    again = run_cli(["scripts/predict.py", "--checkpoint", checkpoint, "--input", folder, "--no_progress"])
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("error: ") and "--overwrite" in again.stderr
    assert (out / "predictions.csv").read_bytes() == before


def test_compile_pads_every_batch_to_one_size(checkpoint, run_frames, tmp_path, monkeypatch):
    """--compile: the network sees only full batches (one compiled graph), and the probabilities are those of
    the plain model. torch.compile itself is replaced by a recorder here (a real compilation takes ~40 s on
    2 cores; its numerics are checked by the training --compile test)."""
    from conftest import load_script
    from rheed.inference import load_classifier

    seen, calls = [], []

    class Recorder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, x):
            seen.append(len(x))
            return self.inner(x)

    def fake_compile(model, dynamic=None):
        calls.append(dynamic)
        return Recorder(model)

    monkeypatch.setattr(torch, "compile", fake_compile)
    plain, compiled = load_classifier(checkpoint), load_classifier(checkpoint)
    compiled.compile(4)
    images = [compiled.image_from_array(f) for f in run_frames[:7]]
    for n in (4, 3, 1):
        np.testing.assert_allclose(compiled.predict_images(images[:n]), plain.predict_images(images[:n]), atol=1e-6)
    assert seen == [4, 4, 4] and calls == [False]

    seen.clear()
    predict = load_script("predict")
    folder = write_folder(tmp_path / "run7", run_frames[:10])
    predict.main(predict.get_args_parser().parse_args(
        ["--checkpoint", str(checkpoint), "--input", str(folder), "--batch_size", "4", "--compile", "--no_progress"]))
    assert seen == [4, 4, 4] and calls == [False, False]   # 10 frames: batches of 4, 4 and 2 padded to 4
    rows = read_csv(tmp_path / "run7_predictions" / "predictions.csv")
    p_plain = plain.predict_images([plain.image_from_array(f) for f in run_frames[:10]])[:, plain.class_names.index("rough")]
    np.testing.assert_allclose([float(r["p_rough"]) for r in rows], p_plain, atol=1e-5)


def test_folder_tiff_stack_and_video_agree(classifier, run_frames, tmp_path):
    import av
    import tifffile
    from rheed.predict import PredictOptions, predict_input

    frames = run_frames[:24]
    write_folder(tmp_path / "frames", frames, names=[f"seq001_{i:06d}.png" for i in range(len(frames))])
    tifffile.imwrite(tmp_path / "stack.tif", np.stack(frames))
    for name, codec, pix_fmt in [("lossless.mkv", "ffv1", "gray"), ("lossy.mp4", "libx264", "yuv420p")]:
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, pix_fmt
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
            container.mux(stream.encode())

    options = PredictOptions(batch_size=7)  # batches that do not divide the run
    results = {}
    for name in ["frames", "stack.tif", "lossless.mkv", "lossy.mp4"]:
        summary = predict_input(classifier, tmp_path / name, tmp_path / f"out_{name}", options, progress=False)
        rows = read_csv(tmp_path / f"out_{name}" / "predictions.csv")
        assert [int(r["frame"]) for r in rows] == list(range(len(frames))), name
        results[name] = (summary, np.array([float(r["p_rough"]) for r in rows]))
    assert results["frames"][0]["input_kind"] == "folder"
    assert results["stack.tif"][0]["input_kind"] == "tiff_stack"
    assert results["lossless.mkv"][0]["input_kind"] == "video"
    reference = results["frames"][1]
    np.testing.assert_allclose(results["stack.tif"][1], reference, atol=1e-6, rtol=0)
    np.testing.assert_allclose(results["lossless.mkv"][1], reference, atol=1e-6, rtol=0)
    # h264 is lossy: same number of frames, mostly the same decisions.
    assert np.mean((results["lossy.mp4"][1] >= 0.5) == (reference >= 0.5)) >= 0.8
    # The sources name the page / frame of the stack and the video.
    assert read_csv(tmp_path / "out_stack.tif" / "predictions.csv")[3]["source"].endswith("stack.tif[3]")

    # A single image is one row whose frame number comes from the name.
    predict_input(classifier, tmp_path / "frames" / "seq001_000005.png", tmp_path / "single", options, progress=False)
    rows = read_csv(tmp_path / "single" / "predictions.csv")
    assert len(rows) == 1 and rows[0]["frame"] == "5"
    assert float(rows[0]["p_rough"]) == pytest.approx(reference[5], abs=1e-6)


def test_non_image_and_corrupt_files_are_skipped(classifier, run_frames, tmp_path, capsys):
    from rheed.predict import PredictOptions, predict_input

    folder = write_folder(tmp_path / "run", run_frames[:8])
    (folder / "notes.txt").write_text("operator notes")
    (folder / "run7_8.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    summary = predict_input(classifier, folder, tmp_path / "out", PredictOptions(), progress=False)
    err = capsys.readouterr().err
    assert "notes.txt: not an image file" in err
    assert "run7_8.png" in err
    assert summary["num_frames"] == 8
    assert sorted(os.path.basename(s["source"]) for s in summary["skipped"]) == ["notes.txt", "run7_8.png"]
    assert len(read_csv(tmp_path / "out" / "predictions.csv")) == 8


def with_overlay(frame: np.ndarray) -> np.ndarray:
    """The frame inside a larger one: a saturated time-stamp strip below it and a grey bar on the right."""
    out = np.zeros((SIZE + 12, SIZE + 8), dtype=np.uint8)
    out[:SIZE, :SIZE] = frame
    out[SIZE + 3:SIZE + 9, 2:SIZE - 2] = 255
    out[:, SIZE + 2:] = 128
    return out


def test_frame_crop_stored_in_the_checkpoint_applies_to_every_input(classifier, checkpoint, run_frames, tmp_path,
                                                                    capsys):
    import av
    import tifffile
    from rheed.inference import load_classifier
    from rheed.predict import PredictOptions, predict_input

    ckpt = torch.load(checkpoint, weights_only=False)
    ckpt["args"] = dict(ckpt["args"], frame_crop=[0, 0, SIZE, SIZE])
    torch.save(ckpt, tmp_path / "cropped.pth")
    cropping = load_classifier(tmp_path / "cropped.pth")
    assert cropping.crop == (0, 0, SIZE, SIZE)

    frames = run_frames[20:36]
    write_folder(tmp_path / "plain", frames)
    covered = [with_overlay(f) for f in frames]
    write_folder(tmp_path / "covered", covered)
    tifffile.imwrite(tmp_path / "covered.tif", np.stack(covered))
    with av.open(str(tmp_path / "covered.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE + 8, SIZE + 12, "gray"
        for frame in covered:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())

    outputs = iter(range(100))

    def p_rough(model, name):
        out = tmp_path / f"out{next(outputs)}"
        summary = predict_input(model, tmp_path / name, out, PredictOptions(), progress=False)
        rows = read_csv(out / "predictions.csv")
        return summary, np.array([float(r["p_rough"]) for r in rows])

    summary, reference = p_rough(classifier, "plain")
    assert summary["frame_crop"] is None
    for name in ["covered", "covered.tif", "covered.mkv"]:
        summary, p = p_rough(cropping, name)
        np.testing.assert_allclose(p, reference, atol=1e-6, rtol=0, err_msg=name)
        assert summary["frame_crop"] == [0, 0, SIZE, SIZE]
    assert np.abs(p_rough(classifier, "covered")[1] - reference).max() > 1e-3  # the overlay does matter uncropped

    # A frame smaller than the box is skipped in a folder (named, with the reason) and an error on its own.
    Image.fromarray(frames[0][:SIZE - 4], mode="L").save(tmp_path / "covered" / "run7_99.png")
    summary, p = p_rough(cropping, "covered")
    assert len(p) == len(frames) and "reaches outside the 32x28 frame" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"run7_99.png: the --frame_crop box 0 0 32 32 reaches outside"):
        predict_input(cropping, tmp_path / "covered" / "run7_99.png", tmp_path / "single", progress=False)


def test_despeckle_stored_in_the_checkpoint_ignores_hot_pixels(tmp_path):
    from conftest import save_random_classifier
    from rheed.inference import load_classifier

    path = save_random_classifier(tmp_path / "random.pth")
    ckpt = torch.load(path, weights_only=False)
    ckpt["args"].update(aug_mode="rheed", subtract_background=True, background_mode="adaptive", despeckle=True)
    torch.save(ckpt, path)
    model = load_classifier(path)
    assert type(model.transform.transforms[0]).__name__ == "Despeckle"
    frame = np.full((48, 64), 20, np.uint8)
    frame[5:40, 30:34] = 200
    hot = frame.copy()
    hot[10, 10] = hot[40, 55] = 255
    write_folder(tmp_path / "frames", [frame, hot])
    p = model.predict_paths([str(tmp_path / "frames" / f"run7_{i}.png") for i in range(2)])
    np.testing.assert_array_equal(p[0], p[1])
    ckpt["args"]["despeckle"] = False
    torch.save(ckpt, path)
    p = load_classifier(path).predict_paths([str(tmp_path / "frames" / f"run7_{i}.png") for i in range(2)])
    assert np.abs(p[0] - p[1]).max() > 1e-6


def test_empty_or_bad_input_is_a_clear_error(classifier, checkpoint, tmp_path):
    from rheed.inference import load_classifier
    from rheed.predict import predict_input

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no image frames"):
        predict_input(classifier, empty, tmp_path / "o1", progress=False)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(UserError, match="no image frames"):
        predict_input(classifier, empty, tmp_path / "o2", progress=False)
    (empty / "smooth").mkdir()
    (empty / "rough").mkdir()
    with pytest.raises(UserError, match=r"no image frames in .*empty \(it has sub-folders rough, smooth: give one"):
        predict_input(classifier, empty, tmp_path / "o2b", progress=False)
    with pytest.raises(UserError, match="input not found"):
        predict_input(classifier, tmp_path / "missing", tmp_path / "o3", progress=False)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported input"):
        predict_input(classifier, tmp_path / "data.csv", tmp_path / "o4", progress=False)
    with pytest.raises(UserError, match="--positive_class 'flat'"):
        from rheed.predict import PredictOptions
        predict_input(classifier, empty, tmp_path / "o5", PredictOptions(positive_class="flat"), progress=False)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_classifier(tmp_path / "nope.pth")
    pretrain = tmp_path / "pretrain.pth"
    torch.save({"model": {"encoder.stages.0.0.dwconv.weight": torch.zeros(1)}, "args": {}, "epoch": 0}, pretrain)
    with pytest.raises(UserError, match="pre-training checkpoint"):
        load_classifier(pretrain)


def test_transition_rule():
    from rheed.predict import PredictOptions, TimelineRecorder

    def detect(p, window=5, persist=3, threshold=0.5, tmp=None):
        recorder = TimelineRecorder(tmp, ["rough", "smooth"], 0, PredictOptions(threshold, window, persist))
        for i, q in enumerate(p):
            recorder.add(i, f"f{i}", np.array([q, 1 - q]))
        recorder.close()
        return recorder.transition, recorder.smoothed

    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        step = [0.0] * 10 + [1.0] * 10
        transition, smoothed = detect(step, tmp=Path(d))
        assert smoothed[12] == pytest.approx(0.6) and smoothed[11] == pytest.approx(0.4)
        assert transition == 12  # 3 of the last 5 frames rough; causal lag (5 - 1) / 2 = 2 frames
        spike = [0.0] * 10 + [1.0] * 3 + [0.0] * 10  # smoothed >= 0.5 for 3 frames only
        assert detect(spike, persist=4, tmp=Path(d))[0] is None
        assert detect(spike, persist=3, tmp=Path(d))[0] == 12
        assert detect(step, window=1, persist=10, tmp=Path(d))[0] == 10
        assert detect(step, window=1, persist=11, tmp=Path(d))[0] is None  # run ends too early


def test_truncated_tiff_stacks_are_reported_and_their_readable_pages_predicted(classifier, run_frames, tmp_path):
    import tifffile
    from rheed.frames import inspect_tiff_pages
    from rheed.predict import PredictOptions, predict_input

    frames = np.stack(run_frames[:10])
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, frames)                          # shaped stack: metadata promises 10 pages
    assert inspect_tiff_pages(whole) == (10, None)
    per_page = tmp_path / "per_page.tif"
    for frame in frames:                                     # one IFD per frame, as camera software writes
        tifffile.imwrite(per_page, frame, append=True)
    assert inspect_tiff_pages(per_page) == (10, None)

    cut_shaped, cut_pages = tmp_path / "cut_shaped.tif", tmp_path / "cut_pages.tif"
    cut_shaped.write_bytes(whole.read_bytes()[:int(whole.stat().st_size * 0.6)])
    data = per_page.read_bytes()
    cut_pages.write_bytes(data[:int(len(data) * 0.65)])
    n_shaped, why_shaped = inspect_tiff_pages(cut_shaped)
    n_pages, why_pages = inspect_tiff_pages(cut_pages)
    assert why_shaped == f"truncated multi-page TIFF: {n_shaped} of 10 pages readable"
    assert why_pages and why_pages.startswith("truncated multi-page TIFF") and 1 <= n_pages < 10

    summary = predict_input(classifier, cut_pages, tmp_path / "out_cut", PredictOptions(), progress=False)
    assert summary["num_frames"] == n_pages
    assert [s["reason"] for s in summary["skipped"]] == [f"{why_pages}; the missing pages are not predicted"]
    rows = read_csv(tmp_path / "out_cut" / "predictions.csv")
    assert [int(r["frame"]) for r in rows] == list(range(n_pages))


def test_watch_picks_up_new_frames(classifier, run_frames, tmp_path):
    from rheed.predict import PredictOptions
    from rheed.watch import watch_folder

    camera = tmp_path / "camera"
    write_folder(camera, run_frames[:3], names=[f"seq001_{i:06d}.png" for i in range(3)])  # before the start
    out = tmp_path / "live"
    stop = threading.Event()
    lines: list[str] = []
    result = {}

    def watch():
        result["summary"] = watch_folder(classifier, camera, out, PredictOptions(batch_size=4), poll_interval=0.05,
                                         refresh=0.2, stop=stop, echo=lines.append)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        for i in range(3, 15):
            time.sleep(0.03)
            Image.fromarray(run_frames[i], mode="L").save(camera / f"seq001_{i:06d}.png")
            if i == 8:
                (camera / "camera.log").write_text("not a frame")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "predictions.csv").exists() and len(read_csv(out / "predictions.csv")) >= 15:
                break
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    rows = read_csv(out / "predictions.csv")
    assert sorted(int(r["frame"]) for r in rows) == list(range(15))
    assert [int(r["frame"]) for r in rows[:3]] == [0, 1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_frames"] == 15 and summary["input_kind"] == "watch"
    assert [os.path.basename(s["source"]) for s in summary["skipped"]] == ["camera.log"]
    assert sum(line.startswith("frame ") for line in lines) == 15
    assert (out / "timeline.png").is_file()


def test_watch_waits_for_slow_writes_and_reports_frames_that_never_decode(classifier, run_frames, tmp_path):
    from rheed.predict import PredictOptions
    from rheed.watch import watch_folder

    camera, out = tmp_path / "camera", tmp_path / "live"
    write_folder(camera, run_frames[:2], names=[f"seq001_{i:06d}.png" for i in range(2)])
    buffer = io.BytesIO()
    Image.fromarray(run_frames[2], mode="L").save(buffer, format="PNG")
    data = buffer.getvalue()
    slow = camera / "seq001_000002.png"
    slow.write_bytes(data[:len(data) // 2])              # the camera is still writing this one
    (camera / "seq001_000003.png").write_bytes(b"\x89PNG broken for good")
    stop = threading.Event()
    result = {}

    def watch():
        # refresh: summary.json (where the skipped frame shows up) is rewritten every 0.2 s, not every 10 s
        result["summary"] = watch_folder(classifier, camera, out, PredictOptions(batch_size=4), poll_interval=0.05,
                                         refresh=0.2, stop=stop, echo=lambda line: None, incomplete_timeout=1.0)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        time.sleep(0.6)                                  # many polls with the half-written file
        slow.write_bytes(data)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(result) == 0:
            rows = read_csv(out / "predictions.csv") if (out / "predictions.csv").exists() else []
            summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
            if len(rows) == 3 and summary.get("skipped"):
                break
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert sorted(int(r["frame"]) for r in read_csv(out / "predictions.csv")) == [0, 1, 2]
    skipped = result["summary"]["skipped"]
    assert [os.path.basename(s["source"]) for s in skipped] == ["seq001_000003.png"]
    assert "unchanged for 1 s" in skipped[0]["reason"]


def test_watch_cli_stops_cleanly_on_sigint(checkpoint, run_frames, tmp_path):
    camera, out = tmp_path / "camera", tmp_path / "live"
    camera.mkdir()
    proc = subprocess.Popen([sys.executable, "scripts/predict.py", "--checkpoint", str(checkpoint), "--watch",
                             str(camera), "--out", str(out), "--poll", "0.1"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 60
        while not (out / "predictions.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        write_folder(camera, run_frames[:5], names=[f"seq001_{i:06d}.png" for i in range(5)])
        while time.monotonic() < deadline and len(read_csv(out / "predictions.csv")) < 5:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "received SIGINT" in stderr
    assert stdout.count("\nframe ") + stdout.startswith("frame ") == 5
    assert len(read_csv(out / "predictions.csv")) == 5
    assert json.loads((out / "summary.json").read_text())["num_frames"] == 5


def test_prefetched_keeps_order_and_raises_producer_errors():
    from rheed.frames import prefetched

    assert list(prefetched(iter(range(500)), depth=8)) == list(range(500))

    def failing():
        yield 1
        raise OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(failing()))
