import pickle

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from rheed.errors import UserError
from rheed.imageio import (SCALING_MODES, ImageListDataset, check_crop_box, check_image, list_images, make_loader,
                           read_frame, read_stack, rheed_loader, to_uint8, verify_files)


def ramp16(h=48, w=64, top=4000):
    """uint16 frame whose values run 0..top (a 12-bit camera range in a 16-bit container)."""
    return np.round(np.linspace(0, top, h * w)).reshape(h, w).astype(np.uint16)


def test_16bit_tiff_keeps_dynamic_range(tmp_path):
    path = tmp_path / "frame.tif"
    tifffile.imwrite(path, ramp16())
    frame = read_frame(path)
    assert frame.dtype == np.uint8 and frame.shape == (48, 64)
    # not black, not saturated: the 0..4000 ramp spans (almost) the full 8-bit range
    assert frame.min() <= 2 and frame.max() >= 253
    assert 100 < frame.mean() < 155
    assert (frame == 255).mean() < 0.01 and (frame == 0).mean() < 0.01
    assert len(np.unique(frame)) > 200
    # monotone mapping: brighter input stays brighter
    assert np.all(np.diff(frame.ravel().astype(int)) >= 0)
    img = rheed_loader(str(path))
    assert img.mode == "RGB" and img.size == (64, 48)


def test_16bit_png_same_as_16bit_tiff(tmp_path):
    data = ramp16()
    tifffile.imwrite(tmp_path / "a.tif", data)
    Image.fromarray(data).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    np.testing.assert_array_equal(read_frame(tmp_path / "a.png"), read_frame(tmp_path / "a.tif"))


def test_scaling_modes(tmp_path):
    path = tmp_path / "f.tif"
    data = ramp16()
    tifffile.imwrite(path, data)
    assert set(SCALING_MODES) >= {"percentile", "dtype", "fixed", "minmax"}
    # dtype: full uint16 range -> 4000 becomes round(4000 / 65535 * 255) = 16 (dark, never clipped)
    assert read_frame(path, scaling="dtype").max() == 16
    assert read_frame(path, scaling="fixed", max_value=4000).max() == 255
    fixed = read_frame(path, scaling="fixed", max_value=8000)
    assert fixed.max() == 128 and fixed.min() == 0
    mm = read_frame(path, scaling="minmax")
    assert mm.min() == 0 and mm.max() == 255
    # a known bit depth below the container's (TIFF BitsPerSample=12) sets the 'dtype' range
    assert to_uint8(data, "dtype", bits=12).max() == round(4000 / 4095 * 255)
    with pytest.raises(UserError, match="bit_max"):
        make_loader("fixed")
    with pytest.raises(UserError, match="unknown bit scaling"):
        make_loader("gamma")


def test_float_and_constant_frames(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32))
    f = read_frame(tmp_path / "f.tif")
    assert f.min() <= 2 and f.max() >= 253
    tifffile.imwrite(tmp_path / "c.tif", np.full((16, 16), 1000, np.uint16))
    for mode in ("percentile", "minmax", "dtype"):
        c = read_frame(tmp_path / "c.tif", scaling=mode)
        assert np.all(c == round(1000 / 65535 * 255))  # no division by zero, brightness kept
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((16, 16), np.float32))
    assert np.all(read_frame(tmp_path / "z.tif") == 0)


def test_8bit_png_bytes_pass_through(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    Image.fromarray(data, mode="L").save(tmp_path / "g.png")
    frame = read_frame(tmp_path / "g.png")
    assert frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, data)
    rgb = np.asarray(rheed_loader(str(tmp_path / "g.png")))
    assert rgb.shape == (40, 56, 3)
    for c in range(3):  # grayscale -> 3 identical channels, each equal to the original bytes
        np.testing.assert_array_equal(rgb[:, :, c], data)
    # 8-bit TIFF passes through too, whatever the scaling mode
    tifffile.imwrite(tmp_path / "g.tif", data)
    np.testing.assert_array_equal(read_frame(tmp_path / "g.tif", scaling="minmax"), data)


def test_rgba_bmp_jpeg(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_frame(tmp_path / "c.png"), rgba[..., :3])
    gray = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.bmp")
    np.testing.assert_array_equal(np.asarray(rheed_loader(str(tmp_path / "g.bmp")))[..., 1], gray)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.jpg")
    assert read_frame(tmp_path / "g.jpg").shape == (20, 24)
    rgb16 = (rng.random((20, 24, 3)) * 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    out = read_frame(tmp_path / "rgb16.tif")
    assert out.shape == (20, 24, 3) and out.dtype == np.uint8 and out.max() > 240


def test_read_stack_multipage(tmp_path):
    frames = [ramp16(16, 16, top=1000 * (i + 1)) for i in range(5)]
    tifffile.imwrite(tmp_path / "s.tif", np.stack(frames), photometric="minisblack")
    out = list(read_stack(tmp_path / "s.tif", scaling="fixed", max_value=5000))
    assert len(out) == 5 and out[0].shape == (16, 16)
    assert [int(o.max()) for o in out] == [51, 102, 153, 204, 255]
    assert len(list(read_stack(tmp_path / "s.tif"))) == 5


def test_loader_picklable_and_dataset(tmp_path):
    loader = make_loader("fixed", max_value=4000)
    clone = pickle.loads(pickle.dumps(loader))
    tifffile.imwrite(tmp_path / "x.tif", ramp16())
    assert np.asarray(clone(str(tmp_path / "x.tif"))).max() == 255
    pickle.dumps(rheed_loader)
    ds = ImageListDataset([str(tmp_path / "x.tif")] * 2, labels=[1, 0], loader=loader,
                          transform=lambda im: torch.from_numpy(np.asarray(im).copy()))
    img, label = ds[0]
    assert img.shape == (48, 64, 3) and label == 1
    assert ds.samples[1] == (str(tmp_path / "x.tif"), 0)
    assert ImageListDataset([str(tmp_path / "x.tif")])[0][1] == 0


def make_bad_files(folder):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), mode="L").save(folder / "good.png")
    tifffile.imwrite(folder / "good16.tif", ramp16())
    data = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"this is a text file, not a PNG\n")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    (folder / "._good.png").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")


def test_list_images(tmp_path):
    make_bad_files(tmp_path)
    (tmp_path / "sub").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "sub" / "A.PNG")
    names = [p[len(str(tmp_path)) + 1:] for p in list_images(tmp_path)]
    assert names == sorted(names)
    assert set(names) == {"empty.png", "good.png", "good16.tif", "notes.png", "truncated.png", "sub/A.PNG"}
    assert "sub/A.PNG" not in [p[len(str(tmp_path)) + 1:] for p in list_images(tmp_path, recursive=False)]
    with pytest.raises(UserError, match="not found"):
        list_images(tmp_path / "missing")


def test_scan_reports_each_bad_file(tmp_path, capsys):
    make_bad_files(tmp_path)
    assert check_image(tmp_path / "good.png") is None
    assert check_image(tmp_path / "truncated.png") == "truncated file"
    assert check_image(tmp_path / "empty.png") == "zero-byte file"
    assert check_image(tmp_path / "notes.png").startswith("not an image")
    assert check_image(tmp_path / "missing.png") == "file not found"
    files = list_images(tmp_path)
    with pytest.raises(UserError, match=r"3 of 5 .*--skip_corrupt"):
        verify_files(files, skip_corrupt=False)
    err = capsys.readouterr().err
    for name, reason in [("truncated.png", "truncated file"), ("empty.png", "zero-byte file"),
                         ("notes.png", "not an image")]:
        assert any(name in line and reason in line for line in err.splitlines()), err
    good, bad = verify_files(files, skip_corrupt=True, workers=3)
    assert good == [str(tmp_path / "good.png"), str(tmp_path / "good16.tif")]
    assert sorted(p.rsplit("/", 1)[1] for p, _ in bad) == ["empty.png", "notes.png", "truncated.png"]
    assert "skipped 3 corrupt of 5" in capsys.readouterr().err


def test_scan_truncated_tiff_and_bad_shapes(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", ramp16(128, 128))
    data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    assert check_image(tmp_path / "cut.tif") == "truncated file"
    tifffile.imwrite(tmp_path / "c5.tif", np.zeros((8, 8, 5), np.uint16), planarconfig="contig",
                     photometric="minisblack")
    assert "channel" in check_image(tmp_path / "c5.tif") or "shape" in check_image(tmp_path / "c5.tif")
    tifffile.imwrite(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32))
    assert "non-finite" in check_image(tmp_path / "nan.tif")
    # many files go through the thread pool and keep their order
    files = [str(tmp_path / "t.tif")] * 40 + [str(tmp_path / "cut.tif")]
    good, bad = verify_files(files, skip_corrupt=True, workers=4)
    assert len(good) == 40 and bad == [(str(tmp_path / "cut.tif"), "truncated file")]


def overlaid(frame: np.ndarray) -> np.ndarray:
    """The frame with a saturated 'time stamp' strip below and a bright bar right of it (a software overlay)."""
    h, w = frame.shape
    out = np.zeros((h + 10, w + 6), dtype=frame.dtype)
    out[:h, :w] = frame
    out[h + 2:h + 8, 3:w - 3] = np.iinfo(frame.dtype).max
    out[:, w + 2:] = np.iinfo(frame.dtype).max // 2
    return out


def test_frame_crop_cuts_the_box_before_scaling(tmp_path):
    frame = ramp16()
    tifffile.imwrite(tmp_path / "whole.tif", overlaid(frame))
    tifffile.imwrite(tmp_path / "pattern.tif", frame)
    box = (0, 0, frame.shape[1], frame.shape[0])
    for scaling in ("percentile", "minmax"):
        cropped = read_frame(tmp_path / "whole.tif", scaling, crop=box)
        assert np.array_equal(cropped, read_frame(tmp_path / "pattern.tif", scaling))  # the overlay scales nothing
        assert not np.array_equal(read_frame(tmp_path / "whole.tif", scaling)[:48, :64], cropped)
    loader = pickle.loads(pickle.dumps(make_loader(crop=[2, 3, 12, 8])))
    assert np.asarray(loader(str(tmp_path / "pattern.tif"))).shape == (5, 10, 3)
    assert np.array_equal(np.asarray(loader(str(tmp_path / "pattern.tif")))[:, :, 0], to_uint8(frame[3:8, 2:12]))
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([overlaid(frame)] * 3), photometric="minisblack")
    pages = list(read_stack(tmp_path / "stack.tif", crop=box))
    assert len(pages) == 3 and all(np.array_equal(p, read_frame(tmp_path / "pattern.tif")) for p in pages)


@pytest.mark.parametrize("box, message", [
    ((5, 0, 3, 10), "needs 0 <= LEFT < RIGHT"),
    ((0, -1, 3, 10), "needs 0 <= LEFT < RIGHT"),
    ((0, 0, 3), "four whole numbers"),
])
def test_frame_crop_box_must_be_a_box(box, message):
    with pytest.raises(UserError, match=message):
        check_crop_box(box)
    with pytest.raises(UserError, match=message):
        make_loader(crop=box)


def test_frames_smaller_than_the_crop_box_are_named(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "big.tif", ramp16(48, 64))
    tifffile.imwrite(tmp_path / "small.tif", ramp16(20, 64))
    files = [str(tmp_path / "big.tif"), str(tmp_path / "small.tif")]
    with pytest.raises(UserError, match="1 of 2 image files do not fit the --frame_crop box"):
        verify_files(files, crop=(0, 0, 64, 40))
    assert "small.tif: the --frame_crop box 0 0 64 40 reaches outside the 64x20 frame" in capsys.readouterr().err
    assert verify_files(files, skip_corrupt=True, crop=(0, 0, 64, 40))[0] == files[:1]
    assert verify_files(files, crop=(0, 0, 64, 20))[0] == files
    with pytest.raises(UserError, match="reaches outside the 64x20 frame"):
        read_frame(tmp_path / "small.tif", crop=(0, 0, 64, 40))
