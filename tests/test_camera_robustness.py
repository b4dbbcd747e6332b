"""benchmarks/camera_robustness.py: frames re-recorded as other cameras would, then scored per change."""
import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, make_image_folder, run_cli, save_random_classifier
from rheed.imageio import rheed_loader

spec = importlib.util.spec_from_file_location("camera_robustness", REPO / "benchmarks" / "camera_robustness.py")
C = importlib.util.module_from_spec(spec)
spec.loader.exec_module(C)


def gray(path):
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def test_re_recording_changes_only_the_camera(tmp_path):
    data = tmp_path / "data"
    (data / "smooth").mkdir(parents=True)
    rng = np.random.default_rng(0)
    source = np.clip(20 + rng.normal(0, 5, (60, 80)), 0, 255)
    source[:, 38:42] = 200  # a streak
    Image.fromarray(source.astype(np.uint8)).save(data / "smooth" / "f_000001.png")
    frames = C.labelled_frames(data)
    recorded = C.re_record(frames, tmp_path / "work", list(C.CHANGES))
    g = gray(data / "smooth" / "f_000001.png")
    files = {name: rows[0][0] for name, rows in recorded.items()}
    assert all(rows[0][1] == "smooth" for rows in recorded.values())
    assert np.array_equal(gray(files["none"]), g)
    assert np.array_equal(gray(files["upside_down"]), g[::-1])
    assert np.array_equal(gray(files["gain3"]), np.clip(3 * g, 0, 255))   # saturated streak, brighter background
    green = np.asarray(Image.open(files["green_phosphor"]))
    assert green.shape == (60, 80, 3) and np.array_equal(green[..., 1], g) and green[..., 0].max() < 0.2 * 255
    counts = np.asarray(Image.open(files["12bit"])).astype(np.float64)
    assert counts.max() <= 4095 and abs(np.mean(counts - 16 * g)) < 2 and np.std(counts - 16 * g) > 4
    square = gray(files["square_sensor"])
    assert square.shape == (80, 80) and np.array_equal(square[10:70], g) and square[:10].max() == 0
    wide = gray(files["wide_sensor"])      # 60 rows x 107 columns (16:9), the frame in columns 13-92
    assert wide.shape == (60, 107) and np.array_equal(wide[:, 13:93], g) and wide[:, :13].max() == 0
    assert np.array_equal(gray(files["square_crop"]), g[:, 10:70])
    small = gray(files["zoom_out"])        # 45 x 60 picture in rows 7-51, columns 10-69; the 4-px streak 3 px wide
    assert small.shape == (60, 80) and small[:7].max() == 0 and small[:, :10].max() == 0 and small[52:].max() == 0
    assert list(np.flatnonzero(small[30] > 150)) == [39, 40] and small[7:52, 10:70].min() > 0
    large = gray(files["zoom_in"])         # the middle 45 x 60 enlarged to 60 x 80: the streak 5 px wide
    assert large.shape == (60, 80) and list(np.flatnonzero(large[30] > 150)) == [38, 39, 40, 41, 42] and large.min() > 0
    jpeg = gray(files["jpeg30"])
    assert files["jpeg30"].suffix == ".jpg" and 0 < np.abs(jpeg - g).mean() < 10
    stamped = gray(files["time_stamp"])
    assert (stamped != g).mean() > 0.01 and np.array_equal(stamped[:20, :40], g[:20, :40])   # text in two corners only
    hot = gray(files["hot_pixels"])
    assert np.all(hot >= g) and 1 <= np.sum(hot > g) <= 3 and hot.max() >= 128   # 0.05 % of 4800 pixels, stuck bright
    dim = gray(files["vignetting"])
    assert np.all(dim <= g) and np.array_equal(dim[29:31, 39:41], g[29:31, 39:41]) and dim[0, 0] == np.round(0.5 * g[0, 0])
    moved = gray(files["off_centre"])
    assert np.array_equal(moved[:, :68], g[:, 12:]) and moved[:, 68:].max() == 0   # 15 % of 80 columns
    lowered = gray(files["off_centre_vertical"])
    assert np.array_equal(lowered[:51], g[9:]) and lowered[51:].max() == 0        # 15 % of 60 rows
    # A 12-bit source frame starts from the loader's 8-bit view of it, not from PIL's clipped conversion.
    (data / "rough").mkdir()
    Image.fromarray((source * 16).astype(np.uint16)).save(data / "rough" / "g_000001.png")
    deep = C.re_record(C.labelled_frames(data), tmp_path / "work_deep", ["none"])["none"]
    assert [label for _, label in deep] == ["rough", "smooth"]
    assert np.array_equal(gray(deep[0][0]), np.asarray(rheed_loader(str(data / "rough" / "g_000001.png")).convert("L")))
    assert gray(deep[0][0]).max() == 255 and gray(deep[0][0]).min() == 0
    # A second call with the same work folder keeps the written files.
    before = files["gain3"].stat().st_mtime_ns
    C.re_record(frames, tmp_path / "work", ["none", "gain3"])
    assert files["gain3"].stat().st_mtime_ns == before


def test_main_scores_every_change_against_the_unchanged_frames(tmp_path):
    data = make_image_folder(tmp_path / "test", n_per_class=(3, 4), size=48)
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    out = tmp_path / "rows.json"
    proc = run_cli(["benchmarks/camera_robustness.py", "--checkpoint", ckpt, "--data", data, "--work", tmp_path / "w",
                    "--changes", "gain3,upside_down", "--json", out], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]}
    assert list(lines) == ["none", "gain3", "upside_down"]
    assert lines["none"][-1] == "0.000"          # the unchanged frames decide as themselves
    rows = json.loads(out.read_text())[str(ckpt)]
    assert set(rows) == {"none", "gain3", "upside_down"}
    assert all(0.0 <= r["changed"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0 for r in rows.values())


def test_unknown_change_and_missing_data_are_one_line_errors(tmp_path, monkeypatch):
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    data = make_image_folder(tmp_path / "test", n_per_class=(1, 1), size=48)
    monkeypatch.chdir(tmp_path)   # the default --work folder is relative
    other = make_image_folder(tmp_path / "other", classes=("rough", "layer"), n_per_class=(1, 1), size=48)
    for extra, message in ((["--data", data, "--changes", "gain9"], "error: unknown --changes ['gain9']"),
                           (["--data", tmp_path / "nope"], "is not a folder"),
                           (["--data", other], "error: class folders ['layer'] are not classes of")):
        monkeypatch.setattr(sys, "argv", ["camera_robustness.py", "--checkpoint", str(ckpt), *map(str, extra)])
        with pytest.raises(SystemExit) as exit_info:
            C.main()
        assert message in str(exit_info.value) and "\n" not in str(exit_info.value)
    assert not (tmp_path / "camera_robustness").exists()   # nothing written on bad input
