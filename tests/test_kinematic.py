"""benchmarks/kinematic_rheed.py: the independent kinematic test set (geometry, classes, determinism, CLI)."""
import csv
import importlib.util
import math

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_cli

spec = importlib.util.spec_from_file_location("kinematic_rheed", REPO / "benchmarks" / "kinematic_rheed.py")
K = importlib.util.module_from_spec(spec)
spec.loader.exec_module(K)


def test_wavevector_is_relativistic():
    # 15 keV electrons: lambda = 0.0994 angstrom (0.1001 without the relativistic correction)
    assert 2 * math.pi / K.wavevector(15.0) == pytest.approx(0.0994, abs=2e-4)


def flat_geometry(**changes) -> dict:
    p = K.draw_run(np.random.default_rng(0), 'layer')
    p.update(width=400, height=300, x0=200.0, y_horizon=250.0, rotation=0.0, rad_per_px=3e-4,
             theta=math.radians(2.0), k=K.wavevector(15.0), **changes)
    return p


def test_specular_spot_sits_at_the_incidence_angle_above_the_horizon():
    p = flat_geometry(terrace=3000.0, specular=5.0)
    _, _, qx, qy, qz = K.scattering_vectors(p)
    img = K.surface_intensity(p, qx, qy, qz, disorder=0.0)
    row, col = np.unravel_index(np.argmax(img), img.shape)
    assert col == pytest.approx(p['x0'], abs=1)
    assert row == pytest.approx(p['y_horizon'] - p['theta'] / p['rad_per_px'], abs=2)


def test_transmission_spot_rows_follow_the_lattice_spacing():
    p = flat_geometry(c=4.0, a_par=4.0, a_perp=4.0, rule='simple', island=100.0, facet=0.0)
    _, phi, qx, qy, qz = K.scattering_vectors(p)
    img = K.island_intensity(p, qx, qy, qz)
    column = img[:, int(p['x0'])]
    rows = [r for r in range(1, len(column) - 1)
            if column[r] > column[r - 1] and column[r] >= column[r + 1] and column[r] > 0.05 * column.max()]
    # spot (0, 0, l) where q_z = k (sin(alpha) + sin(theta)) = 2 pi l / c
    expected = [p['y_horizon'] - math.asin(2 * math.pi * l / p['c'] / p['k'] - math.sin(p['theta'])) / p['rad_per_px']
                for l in (1, 2)]
    for e in expected:
        assert min(abs(r - e) for r in rows) <= 2, (rows, expected)


def test_cli_writes_every_fine_class_deterministically(tmp_path):
    out = tmp_path / "kin"
    proc = run_cli(["benchmarks/kinematic_rheed.py", "--out", out, "--runs", "5", "--frames", "2", "--seed", "3"],
                   check=True)
    assert "10 frames of 5 runs" in proc.stdout and "0 of 10 left out" in proc.stdout
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert len(rows) == 10
    assert {r['fine_class'] for r in rows} >= {'layer_smooth', 'laue_smooth', 'island_rough', 'ring_rough'}
    transition = [r['fine_class'] for r in rows if r['kind'] == 'transition']
    assert transition == ['island_smooth', 'island_rough']
    for r in rows:
        arr = np.asarray(Image.open(out / r['file']))
        assert arr.shape == (int(r['height']), int(r['width']))
        assert arr.dtype == (np.uint8 if r['bits'] == '8' else np.uint16)
        share = float(r['bulk_share'])   # the written label agrees with what the pattern shows
        assert share >= K.LABEL_SHARE['rough'] if r['fine_class'].endswith('_rough') else share <= K.LABEL_SHARE['smooth']
    again = tmp_path / "again"
    again.mkdir()
    run = rows[0]
    K.write_run(again, 3, int(run['sequence'][3:]), run['kind'], 2)
    np.testing.assert_array_equal(np.asarray(Image.open(again / run['file'])), np.asarray(Image.open(out / run['file'])))


def test_cli_refuses_a_non_empty_output_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("old")
    proc = run_cli(["benchmarks/kinematic_rheed.py", "--out", tmp_path, "--runs", "1"])
    assert proc.returncode != 0
    assert "not empty" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "keep.txt").read_text() == "old"
