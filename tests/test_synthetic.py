"""Synthetic RHEED generator: counts, names, determinism, physics-shaped statistics, TIFF, CLI."""
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from conftest import REPO, run_cli
from rheed import synthetic as S
from rheed import synthetic_dataset as D
from rheed.errors import UserError

SCRIPT = REPO / "scripts" / "make_synthetic_rheed.py"
NAME_RE = re.compile(r"^(seq\d{3})_(\d{6})\.(png|tif)$")
W, H = 128, 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "data_rheed"
    D.generate_dataset(out, scale=0.05, sequences=8, seed=0, width=W, height=H)
    return out


def load_frames(root: Path) -> dict:
    """{class: [(sequence, frame, uint8 array)]} sorted by sequence and frame."""
    frames = {}
    for cls in S.CLASS_NAMES:
        items = []
        for f in sorted((root / cls).iterdir()):
            m = NAME_RE.match(f.name)
            assert m, f"unexpected file name {f.name}"
            items.append((m.group(1), int(m.group(2)), np.asarray(Image.open(f))))
        frames[cls] = items
    return frames


def streak_statistic(img: np.ndarray) -> float:
    """log ratio of horizontal to vertical gradient energy above the horizon: streaks >> 0, spots ~ 0."""
    g = gaussian_filter(img.astype(np.float32), 1.0)
    h = (g - gaussian_filter(g, 6))[: int(0.7 * g.shape[0])]
    gx = np.diff(h, axis=1)[:-1, :]
    gy = np.diff(h, axis=0)[:, :-1]
    return float(np.log((gx ** 2).mean() / (gy ** 2).mean()))


def test_plan_follows_real_proportions():
    for scale, expected in ((1.0, (2003, 567, 671)), (0.1, (200, 57, 67)), (0.05, (100, 28, 34))):
        plans = D.plan_runs(scale)
        layer = sum(p.n_smooth for p in plans if p.kind == "layer")
        smooth = sum(p.n_smooth for p in plans if p.kind == "island")
        rough = sum(p.n_rough for p in plans if p.kind == "island")
        assert (layer, smooth, rough) == expected
    tiny = D.plan_runs(0.004, sequences=10)  # 8 / 2 / 3 frames: island runs are capped at 2
    islands = [p for p in tiny if p.kind == "island"]
    assert len(islands) == 2 and all(p.n_smooth >= 1 and p.n_rough >= 1 for p in islands)
    with pytest.raises(UserError, match="scale"):
        D.plan_runs(0.0)


def test_files_names_and_sequences(dataset):
    frames = load_frames(dataset)
    assert {c: len(v) for c, v in frames.items()} == {"layer_smooth": 100, "island_smooth": 28, "island_rough": 34}
    assert frames["layer_smooth"][0][2].shape == (H, W) and frames["layer_smooth"][0][2].dtype == np.uint8

    layer_ids = {s for s, _, _ in frames["layer_smooth"]}
    smooth = {}
    rough = {}
    for s, f, _ in frames["island_smooth"]:
        smooth.setdefault(s, []).append(f)
    for s, f, _ in frames["island_rough"]:
        rough.setdefault(s, []).append(f)
    assert len(layer_ids) == 8 and len(smooth) == 8
    assert set(smooth) == set(rough) and not layer_ids & set(smooth)
    for s in smooth:
        run = sorted(smooth[s]) + sorted(rough[s])
        assert run == list(range(len(run))), "frames of a run must be consecutive, smooth before rough"
    for s in layer_ids:
        nums = sorted(f for q, f, _ in frames["layer_smooth"] if q == s)
        assert nums == list(range(len(nums)))

    rows = (dataset / "synthetic_frames.csv").read_text().splitlines()
    assert rows[0] == "file,fine_class,sequence,frame,progress" and len(rows) == 1 + 162
    progress = {r.split(",")[1]: [] for r in rows[1:]}
    for r in rows[1:]:
        progress[r.split(",")[1]].append(float(r.split(",")[4]))
    assert max(progress["island_smooth"]) < S.ROUGH_THRESHOLD <= min(progress["island_rough"])


def test_deterministic_for_seed(tmp_path):
    def write(name, seed):
        out = tmp_path / name
        D.generate_dataset(out, scale=0.005, sequences=2, seed=seed, width=64, height=48)
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*.png"))}

    a, b, c = write("a", 0), write("b", 0), write("c", 1)
    assert len(a) == 10 + 3 + 3
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_classes_differ_by_streak_statistic_not_by_brightness(dataset):
    frames = load_frames(dataset)
    stat = {c: np.array([streak_statistic(img) for _, _, img in v]) for c, v in frames.items()}
    mean = {c: np.array([img.mean() for _, _, img in v]) for c, v in frames.items()}
    # layer frames are vertical streaks, rough frames spot grids, early islands in between
    assert np.median(stat["layer_smooth"]) > 1.2
    assert np.median(stat["island_rough"]) < 0.7
    assert np.median(stat["layer_smooth"]) > np.median(stat["island_smooth"]) > np.median(stat["island_rough"])
    threshold = 1.0
    assert (stat["layer_smooth"] > threshold).mean() > 0.9
    assert (stat["island_rough"] < threshold).mean() > 0.9

    is_rough = np.r_[np.zeros(100 + 28), np.ones(34)]
    auc_stat = roc_auc_score(is_rough, -np.r_[stat["layer_smooth"], stat["island_smooth"], stat["island_rough"]])
    auc_mean = roc_auc_score(is_rough, np.r_[mean["layer_smooth"], mean["island_smooth"], mean["island_rough"]])
    assert auc_stat > 0.9
    assert 0.25 < auc_mean < 0.8, f"mean brightness separates the classes too well (AUC {auc_mean:.2f})"


def test_brightness_varies_between_and_within_sequences(dataset):
    frames = load_frames(dataset)
    per_seq = {}
    for s, _, img in frames["layer_smooth"]:
        per_seq.setdefault(s, []).append(img.mean())
    seq_means = np.array([np.mean(v) for v in per_seq.values()])
    assert seq_means.max() / seq_means.min() > 1.5
    # beam drift and growth oscillations: brightness changes along every run
    assert all(np.std(v) / np.mean(v) > 0.01 for v in per_seq.values())


def test_frame_geometry_symmetry_shadow_and_oscillation():
    rng = np.random.default_rng(7)
    p = S.random_params(rng, 200, 150, run_frames=100)
    p = dataclasses.replace(p, x0=(p.width - 1) / 2, rotation=0.0, lr_asym=0.0, drift=(), drift_trend=0.0,
                            osc_decay=1e9)
    img = S.render_clean(p, 0.05, t=0.0)

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    assert corr(img, img[:, ::-1]) > 0.99          # left-right symmetric about the specular spot
    assert corr(img, img[::-1, :]) < 0.8           # but not up-down
    horizon = int(p.y_shadow)
    assert img[horizon + 6:].mean() < 0.2 * img[horizon - 40:horizon - 2].mean()   # dark shadow edge

    spec_row, spec_col = int(round(p.y_shadow - p.laue_radius)), int(round(p.x0))
    def spec(t):
        return S.render_clean(p, 0.05, t=t)[spec_row - 2:spec_row + 3, spec_col - 2:spec_col + 3].mean()
    values = np.array([spec(t) for t in np.linspace(0, p.ml_period, 9)])
    assert values.max() / values.min() > 1.2                          # monolayer oscillation
    assert abs(values[0] - values[-1]) < 0.05 * (values.max() - values.min()) + 1e-6   # with its period


def test_render_frame_noise_and_range():
    rng = np.random.default_rng(3)
    p = S.random_params(rng, 96, 72)
    a = S.render_frame(p, 0.3, np.random.default_rng(1))
    b = S.render_frame(p, 0.3, np.random.default_rng(1))
    c = S.render_frame(p, 0.3, np.random.default_rng(2))
    assert a.dtype == np.float32 and a.shape == (72, 96)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_normal_deviates_are_standard_normal_and_reproducible():
    z = S.normal_deviates(np.random.default_rng(0), (400, 500))
    assert z.dtype == np.float32 and z.shape == (400, 500)
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1.0) < 0.01
    assert abs(np.mean(z > 1.0) - 0.1587) < 0.003 and abs(np.mean(np.abs(z) > 3.0) - 0.0027) < 0.0005
    assert np.array_equal(z, S.normal_deviates(np.random.default_rng(0), (400, 500)))
    assert not np.array_equal(z, S.normal_deviates(np.random.default_rng(1), (400, 500)))


def test_sensor_noise_has_shot_plus_read_statistics_in_every_brightness_range():
    rng = np.random.default_rng(0)
    read_sd = 2.0
    for lam in (0.0, 2.0, S.POISSON_BELOW, 15.0, S.NORMAL_SHOT_NOISE_FROM, 400.0):
        signal = S.sensor_noise(np.full(200_000, lam, np.float32), read_sd, rng)
        assert signal.dtype == np.float32
        variance = lam + read_sd ** 2
        assert abs(signal.mean() - lam) < 4 * np.sqrt(variance / signal.size)
        assert abs(signal.var() / variance - 1.0) < 0.03
    for lam in (3.0, 15.0, 25.0):                                                  # whole photons, Poisson skew
        counts = S.sensor_noise(np.full(400_000, lam, np.float32), 0.0, rng).astype(np.float64)
        assert np.array_equal(counts, np.round(counts)) and counts.min() >= 0
        skew = ((counts - counts.mean()) ** 3).mean() / counts.var() ** 1.5
        assert abs(skew * np.sqrt(lam) - 1.0) < 0.1
    mixed = np.array([0.0, 1.0, 15.0, 50.0, 900.0], np.float32).repeat(1000)
    a, b = S.sensor_noise(mixed, 1.0, np.random.default_rng(7)), S.sensor_noise(mixed, 1.0, np.random.default_rng(7))
    assert np.array_equal(a, b) and a[:1000].min() < 0 < a[:1000].max()           # read noise around the black level


def test_kikuchi_lines_match_the_full_frame_profile():
    rng = np.random.default_rng(4)
    p = S.random_params(rng, 200, 150)
    y, x = np.arange(150, dtype=np.float32), np.arange(200, dtype=np.float32)
    fast = np.zeros((150, 200), np.float32)
    S._add_kikuchi(fast, p, 0.7, y, x)
    slow = np.zeros_like(fast)
    y_spec = p.y_shadow - p.laue_radius
    for angle, offset, amp, width in p.kikuchi:
        for side in (-1.0, 1.0):
            u = ((x[None, :] - (p.x0 + side * offset)) * np.sin(angle)
                 + (y[:, None] - y_spec) * side * np.cos(angle)) / width
            slow += 0.7 * amp * np.exp(-0.5 * u * u) * (1.0 - 0.6 * side * u)
    assert fast.max() > 0.5 * slow.max() > 0
    np.testing.assert_allclose(fast, slow, atol=1e-5 * slow.max())   # float32 rounding only


def test_rotate_turns_about_the_centre_and_fills_corners_from_the_border():
    img = np.full((41, 61), 0.25, np.float32)
    img[20, 50] = 1.0                                   # a point 20 columns right of the centre (20, 30)
    turned = S._rotate(img, 90.0, (20.0, 30.0))
    r, c = np.unravel_index(np.argmax(turned), turned.shape)
    assert (abs(c - 30) <= 1) and abs(abs(r - 20) - 20) <= 1   # now straight above or below the centre
    assert turned[0, 0] == pytest.approx(0.25) and turned.dtype == np.float32
    np.testing.assert_allclose(S._rotate(img, 0.0, (20.0, 30.0)), img, atol=1e-6)


def test_rotate_samples_like_pils_bilinear_affine_transform():
    # the sparse warp replaced PIL's transform (3x faster); frames must stay those PIL gave, to float rounding
    rng = np.random.default_rng(3)
    img = rng.random((37, 53), dtype=np.float32)
    img[5:9, 10:40] += 3.0
    for degrees, center in ((2.3, (30.5, 26.0)), (-1.7, (18.0, 40.25)), (35.0, (10.0, 5.0))):
        a = np.radians(degrees)
        cos, sin = np.cos(a), np.sin(a)
        cy, cx = center
        coefficients = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        expected = np.asarray(Image.fromarray(img).transform(
            img.shape[::-1], Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR,
            fillcolor=float(np.median(border))))
        turned = S._rotate(img, degrees, center)
        assert turned.dtype == np.float32 and turned.shape == img.shape
        np.testing.assert_allclose(turned, expected, rtol=1e-5, atol=1e-5)


def test_make_growth_run_has_known_transition():
    progress = S.island_progress(10, 4)
    assert np.all(np.diff(progress) > 0)
    assert np.all(progress[:4] < S.ROUGH_THRESHOLD) and np.all(progress[4:] >= S.ROUGH_THRESHOLD)
    frames = S.make_growth_run(10, 4, size=(W, H), seed=5)
    assert len(frames) == 10 and frames[0].shape == (H, W) and frames[0].dtype == np.uint8
    assert streak_statistic(frames[0]) > streak_statistic(frames[-1]) + 0.5
    with pytest.raises(ValueError):
        S.make_growth_run(5, 6, size=(W, H))


def test_tiff16_keeps_dynamic_range(tmp_path):
    out = tmp_path / "tif"
    D.generate_dataset(out, scale=0.005, sequences=2, seed=0, tiff16=True, width=96, height=72)
    files = sorted(out.rglob("*.tif"))
    assert len(files) == 16 and not list(out.rglob("*.png"))
    for f in files:
        arr = tifffile.imread(f)
        assert arr.dtype == np.uint16 and arr.shape == (72, 96)
        assert arr.max() > 1000                       # well beyond 8 bits
        assert (arr >= 4095).mean() < 0.002           # 12-bit camera range, not saturated


def test_cli_writes_and_refuses_non_empty_output(tmp_path):
    out = tmp_path / "data_rheed"
    args = [SCRIPT, "--out", out, "--scale", "0.005", "--sequences", "2", "--width", "64", "--height", "48"]
    proc = run_cli(args, check=True)
    assert "wrote 16 frames in 4 sequences" in proc.stdout
    assert len(list((out / "layer_smooth").glob("seq*_*.png"))) == 10
    before = {f: f.read_bytes() for f in out.rglob("*.png")}

    proc = run_cli(args + ["--seed", "1"])
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: ") and "not empty" in proc.stderr
    assert before == {f: f.read_bytes() for f in out.rglob("*.png")}

    keep = out / "layer_smooth" / "my_notes.txt"
    keep.write_text("user file")
    run_cli(args + ["--seed", "1", "--overwrite"], check=True)
    assert keep.read_text() == "user file"
    after = {f: f.read_bytes() for f in out.rglob("*.png")}
    assert after.keys() == before.keys() and after != before

    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    proc = run_cli([SCRIPT, "--out", not_a_dir, "--scale", "0.005"])
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    proc = run_cli([SCRIPT, "--out", tmp_path / "new", "--scale", "0"])
    assert proc.returncode == 1 and "--scale" in proc.stderr


def test_camera_randomisation_varies_every_factor_and_is_deterministic(tmp_path):
    from rheed.camera import FRAME_SIZES, apply_camera, random_camera, screen_response
    cams = [random_camera(np.random.default_rng([0, i, 7])) for i in range(40)]
    assert {c.flip_vertical for c in cams} == {True, False}
    assert {c.screen is None for c in cams} == {True, False}
    assert {c.jpeg_quality is None for c in cams} == {True, False}
    assert len({c.size for c in cams}) >= 4 and len({round(c.gamma, 2) for c in cams}) > 10
    frame = np.zeros((60, 80), dtype=np.float32)
    frame[50:] = 0.0
    frame[:45] = 0.5  # bright above the shadow edge, dark below
    flipped = next(c for c in cams if c.flip_vertical and c.screen is None)
    out = apply_camera(frame, flipped)
    assert out.shape == frame.shape and out[:10].mean() < out[-40:].mean()  # shadow edge now at the top
    screened = next(c for c in cams if c.screen is not None)
    out = apply_camera(np.full((60, 80), 0.5, np.float32), screened)
    assert out[0, 0] < 0.1 < out[int(screened.screen[1] * 60), int(screened.screen[0] * 80)]
    response = screen_response(screened, 60, 80)          # computed once per run by the generator
    assert response.dtype == np.float32 and response.shape == (60, 80)
    assert np.array_equal(apply_camera(frame, screened, response), apply_camera(frame, screened))

    first, second = tmp_path / "a", tmp_path / "b"
    for out_dir in (first, second):
        D.generate_dataset(out_dir, scale=0.005, sequences=2, seed=3, camera_randomize=True)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    sizes = {Image.open(first / f).size for f in files}
    assert sizes <= set(FRAME_SIZES)


def test_anchored_island_runs_turn_3d_at_the_label_threshold():
    from rheed.synthetic_variety import widen
    runs = [widen(S.random_params(np.random.default_rng([5, i]), 320, 240), np.random.default_rng([6, i]))
            for i in range(12)]
    free = [S.spot_share(p, S.ROUGH_THRESHOLD) for p in runs]
    assert max(free) - min(free) > 0.3            # without the anchor the label boundary means different looks
    for p in runs:
        assert S.spot_share(p, 0.0) < 0.05 and S.spot_share(p, 1.0) > 0.95
        a = S.anchor_transition(p)
        assert [S.rendered_roughness(a, r) for r in (-0.1, 0.0, S.ROUGH_THRESHOLD, 1.0, 1.2)] == \
            pytest.approx([0.0, 0.0, a.rough_at, 1.0, 1.0])
        assert S.spot_share(a, S.rendered_roughness(a, S.ROUGH_THRESHOLD)) == pytest.approx(0.5, abs=0.01)
        assert S.spot_share(a, S.rendered_roughness(a, 0.4)) < 0.5 < S.spot_share(a, S.rendered_roughness(a, 0.6))
    # streaks broken into dots at the Bragg rows count as 3D even without any transmission spots
    no_spots = dataclasses.replace(runs[0], spot_amp=0.0)
    assert S.spot_share(no_spots, 0.2) < 0.1 < S.spot_share(no_spots, 0.7)


def test_dataset_anchors_island_runs_only(tmp_path, monkeypatch):
    def write(name):
        out = tmp_path / name
        D.generate_dataset(out, scale=0.005, sequences=2, seed=3, width=96, height=72, variety=True)
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*.png"))}

    anchored = write("anchored")
    monkeypatch.setattr(D, "anchor_transition", lambda p: p)
    plain = write("plain")
    assert anchored.keys() == plain.keys()
    changed = {name.split("/")[0] for name in anchored if anchored[name] != plain[name]}
    assert changed and changed <= {"island_smooth", "island_rough"}


def test_variety_writes_every_fine_class_deterministically(tmp_path):
    from rheed.synthetic_variety import VARIETY_CLASSES

    def write(name):
        out = tmp_path / name
        summary = D.generate_dataset(out, scale=0.01, sequences=4, seed=2, width=96, height=72, variety=True)
        return summary, {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*.png"))}

    summary, a = write("a")
    _, b = write("b")
    assert a == b
    parallel = tmp_path / "parallel"   # runs written by two processes: the same files
    D.generate_dataset(parallel, scale=0.01, sequences=4, seed=2, width=96, height=72, variety=True, workers=2)
    assert {str(f.relative_to(parallel)): f.read_bytes() for f in sorted(parallel.rglob("*.png"))} == a
    assert (parallel / "synthetic_frames.csv").read_bytes() == (tmp_path / "a" / "synthetic_frames.csv").read_bytes()
    assert set(summary["counts"]) == set(S.CLASS_NAMES + VARIETY_CLASSES)
    assert all(n > 0 for n in summary["counts"].values())
    rows = (tmp_path / "a" / "synthetic_frames.csv").read_text().splitlines()[1:]
    by_class = {}
    for row in rows:
        _, fine_class, sequence, _, _ = row.split(",")
        by_class.setdefault(fine_class, set()).add(sequence)
    base = set().union(*(by_class[c] for c in S.CLASS_NAMES))
    for cls in VARIETY_CLASSES:   # extra kinds are whole runs of their own
        assert by_class[cls] and not by_class[cls] & base


def test_variety_widens_the_geometry():
    from rheed.synthetic_variety import widen
    base = [S.random_params(np.random.default_rng([0, i])) for i in range(60)]
    wide = [widen(p, np.random.default_rng([1, i])) for i, p in enumerate(base)]

    def streaks(ps):  # integer-order streaks across the frame
        return [p.width / p.spacing for p in ps]

    def lengths(ps):
        return [p.streak_length / p.height for p in ps]

    assert min(streaks(wide)) < 5 < 15 < max(streaks(wide))
    assert min(streaks(base)) > 7 and max(streaks(base)) < 15
    assert max(lengths(wide)) / min(lengths(wide)) > 5 > max(lengths(base)) / min(lengths(base))
    assert max(p.bg_glow for p in wide) > 0.3 > max(p.bg_glow for p in base)
    assert all(p.y_shadow - p.laue_radius > 0 for p in wide)  # the specular spot stays in the frame


def test_extra_kinds_render_their_physics():
    from rheed.synthetic_variety import kind_params, kind_progress
    rng = np.random.default_rng(11)
    p0 = dataclasses.replace(S.random_params(rng, 320, 240), rotation=0.0)
    y = np.arange(p0.height, dtype=np.float32)[:, None]
    x = np.arange(p0.width, dtype=np.float32)[None, :]
    r = np.sqrt((x - p0.x0) ** 2 + (y - p0.y_shadow) ** 2)

    # polycrystalline rings: concentric maxima around the transmitted beam, gone without ring_amp
    ring = kind_params("ring", p0, rng)
    rho = float(kind_progress("ring", ring, 1, rng)[0])
    img = S.render_clean(ring, rho)
    plain = S.render_clean(dataclasses.replace(ring, ring_amp=0.0), rho)
    above = y < ring.y_shadow - 5
    for radius in ring.ring_radii[:3]:
        on = (np.abs(r - radius) < 1) & above
        off = (np.abs(r - radius - 4 * ring.ring_sigma) < 1) & above
        assert (img - plain)[on].mean() > 5 * (img - plain)[off].mean()
    assert rho > S.ROUGH_THRESHOLD

    # flat-surface Laue dots: the brightest points (specular spot masked) lie on the zeroth Laue circle
    laue = kind_params("laue", dataclasses.replace(p0, kikuchi=()), rng)
    rho = float(kind_progress("laue", laue, 1, rng)[0])
    img = S.render_clean(laue, rho)
    spec = (np.abs(x - laue.x0) < 4 * laue.specular_sigma[0]) & (np.abs(y - (laue.y_shadow - laue.laue_radius))
                                                               < 4 * laue.specular_sigma[1])
    img = np.where(spec | (y > laue.y_shadow - 3), 0, img)
    peaks = np.argwhere(img > np.percentile(img, 99.9))
    dist = np.sqrt((peaks[:, 1] - laue.x0) ** 2 + (peaks[:, 0] - laue.y_shadow) ** 2)
    assert np.median(np.abs(dist - laue.laue_radius)) < 4 and rho < S.ROUGH_THRESHOLD

    # amorphous halo: one broad maximum, no sharp feature
    halo = kind_params("halo", p0, rng)
    img = S.render_clean(halo, 1.0) - S.render_clean(dataclasses.replace(halo, halo_amp=0.0), 1.0)
    ring_only = S.render_clean(ring, 1.0) - S.render_clean(dataclasses.replace(ring, ring_amp=0.0), 1.0)

    def steepness(diff):  # largest pixel-to-pixel step relative to the peak
        return np.abs(np.diff(diff, axis=1)).max() / diff.max()

    assert img.max() > 0 and steepness(img) < 0.08 < steepness(ring_only)


def test_binary_split_leaves_ambiguous_classes_out(tmp_path):
    from rheed.split import split_dataset
    from rheed.split_layout import AMBIGUOUS_CLASSES, FINE_TO_BINARY
    src = tmp_path / "data"
    D.generate_dataset(src, scale=0.01, sequences=4, seed=1, width=64, height=48, variety=True)
    assert FINE_TO_BINARY["laue_smooth"] == "smooth" and FINE_TO_BINARY["ring_rough"] == "rough"
    report = split_dataset(src, tmp_path / "split", by_sequence=True, temporal_layer=True, verbose=False)
    n_halo = len(list((src / "amorphous_halo").iterdir()))
    assert report["ambiguous_left_out"] == {"amorphous_halo": n_halo} and "amorphous_halo" in AMBIGUOUS_CLASSES
    written = {p.parent.name for p in (tmp_path / "split").rglob("*.png")}
    assert written == {"smooth", "rough"}
    fine = split_dataset(src, tmp_path / "fine", classes="fine", by_sequence=True, temporal_layer=True, verbose=False)
    assert fine["ambiguous_left_out"] == {} and any((tmp_path / "fine").rglob("amorphous_halo/*.png"))


def test_transition_band_adds_mixed_island_frames_apart(tmp_path):
    from rheed.split import split_dataset
    from rheed.split_layout import AMBIGUOUS_CLASSES
    src = tmp_path / "data"
    plain = D.generate_dataset(tmp_path / "plain", scale=0.02, sequences=2, seed=4, width=64, height=48)
    summary = D.generate_dataset(src, scale=0.02, sequences=2, seed=4, width=64, height=48, transition_band=0.1)
    counts = summary["counts"]
    assert S.TRANSITION_CLASS in AMBIGUOUS_CLASSES
    # the labelled counts follow the plan as without the band; the band frames come on top
    assert {c: counts[c] for c in S.CLASS_NAMES} == plain["counts"]
    assert counts[S.TRANSITION_CLASS] >= 2 and summary["files"] == plain["files"] + counts[S.TRANSITION_CLASS]
    rows = [r.split(",") for r in (src / "synthetic_frames.csv").read_text().splitlines()[1:]]
    by_run = {}
    for _, fine_class, sequence, frame, progress in rows:
        by_run.setdefault(sequence, []).append((int(frame), fine_class, float(progress)))
        if fine_class == "island_smooth":
            assert float(progress) < S.ROUGH_THRESHOLD - 0.1
        if fine_class == "island_rough":
            assert float(progress) > S.ROUGH_THRESHOLD + 0.1
        if fine_class == S.TRANSITION_CLASS:
            assert abs(float(progress) - S.ROUGH_THRESHOLD) < 0.1
    for frames in by_run.values():   # in time order: smooth, then the band, then rough; roughness rising
        order = [c for _, c, _ in sorted(frames)]
        if "island_rough" in order:
            assert order == sorted(order, key=("island_smooth", S.TRANSITION_CLASS, "island_rough").index)
            assert np.all(np.diff([p for _, _, p in sorted(frames)]) > 0)
    report = split_dataset(src, tmp_path / "split", by_sequence=True, temporal_layer=True, verbose=False)
    assert report["ambiguous_left_out"] == {S.TRANSITION_CLASS: counts[S.TRANSITION_CLASS]}
    assert not any(S.TRANSITION_CLASS in p.name for p in (tmp_path / "split").rglob("*.png"))
    with pytest.raises(UserError, match="--transition_band must be in"):
        D.generate_dataset(tmp_path / "bad", scale=0.02, sequences=2, transition_band=0.3)


def test_island_progress_without_band_is_unchanged():
    n, t, start, end = 11, 5, 0.2, 0.9
    i = np.arange(n)
    old = np.where(i < t, start + (0.5 - start) * (i + 0.5) / t, 0.5 + (end - 0.5) * (i - t + 0.5) / (n - t))
    assert np.allclose(S.island_progress(n, t, start, end), old)
    banded = S.island_progress(n + 3, t, start, end, band=0.1, n_band=3)
    assert banded[t - 1] < 0.4 and np.all(np.abs(banded[t:t + 3] - 0.5) < 0.1) and banded[t + 3] > 0.6
    assert S.band_frames(0.0, 11, start, end) == 0 and S.band_frames(0.1, 11, start, end) == 3


def test_blur_on_factors_matches_blurring_the_image():
    from rheed.synthetic_variety import kind_params, widen
    rng = np.random.default_rng(5)
    for i in range(4):
        p = widen(S.random_params(rng, 160, 120), rng)
        p = dataclasses.replace(p, rotation=0.0, chevron=0.5, blur=1.0 + 0.5 * i)
        for q in (p, kind_params("ring", p, rng), kind_params("halo", p, rng)):
            for rho in (0.05, 0.5, 1.0):   # Kikuchi lines, streaks and spots, spots with chevrons
                want = gaussian_filter(S.render_clean(q, rho, 2.0), q.blur)
                got = S.render_clean(q, rho, 2.0, blur=q.blur)
                # the frame's edges reflect the image in one case and continue the lines in the other
                assert np.abs(got - want)[4:-4, 4:-4].max() < 0.015 * want.max()
                assert abs(got.sum() / want.sum() - 1.0) < 0.002
