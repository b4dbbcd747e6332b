import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import run_cli
from rheed.analysis import analyze_dataset, class_weights, imbalance_ratio
from rheed.errors import UserError
from rheed.split import split_dataset

COUNTS = {"layer_smooth": 20, "island_smooth": 8, "island_rough": 12}


def make_dataset(root, size=32):
    """Class folders with frames named seqNNN_FFFFFF; island_smooth/rough share runs; one 16-bit TIFF
    and two corrupt files."""
    rng = np.random.default_rng(0)
    for c, n in COUNTS.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            seq = 1 if c == "layer_smooth" else 2 + i % 2
            frame = i if c != "island_rough" else 100 + i
            img = np.clip(rng.normal(60 + 40 * (c == "island_rough"), 20, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(img, mode="L").save(root / c / f"seq{seq:03d}_{frame:06d}.png")
    tifffile.imwrite(root / "island_rough" / "seq009_000001.tif",
                     np.linspace(0, 4000, 48 * 40).reshape(40, 48).astype(np.uint16))
    (root / "layer_smooth" / "seq001_000999.png").write_bytes(b"")
    data = (root / "layer_smooth" / "seq001_000000.png").read_bytes()
    (root / "island_smooth" / "seq002_000998.png").write_bytes(data[:100])
    return root


def test_weights_formula():
    w = class_weights({"smooth": 2570, "rough": 671})
    assert w == {"rough": round(3241 / (2 * 671), 4), "smooth": round(3241 / (2 * 2570), 4)}
    assert abs((2570 * w["smooth"] + 671 * w["rough"]) / 3241 - 1) < 1e-3  # mean over images is 1
    assert imbalance_ratio({"smooth": 2570, "rough": 671}) == 3.83
    assert imbalance_ratio({"a": 5}) is None


def test_analyze_class_folders(tmp_path):
    src = make_dataset(tmp_path / "data_rheed")
    out = tmp_path / "analysis"
    result = analyze_dataset(src, out, samples_per_class=3)
    saved = json.loads((out / "dataset_analysis.json").read_text())
    png = out / "dataset_analysis.png"
    assert png.stat().st_size > 10_000 and Image.open(png).size[0] > 300
    assert saved["layout"] == "classes" and saved["n_images"] == 40 + 3 and saved["n_corrupt"] == 2
    reasons = {c["path"].rsplit("/", 1)[1]: c["reason"] for c in saved["corrupt"]}
    assert reasons == {"seq001_000999.png": "zero-byte file", "seq002_000998.png": "truncated file"}
    fine = saved["per_fine_class"]
    assert {c: s["count"] for c, s in fine.items()} == {"island_rough": 13, "island_smooth": 9, "layer_smooth": 21}
    assert fine["island_rough"]["bit_depths"] == {"uint8": 12, "uint16": 1}
    assert fine["island_rough"]["sizes"] == {"32x32": 12, "48x40": 1}
    assert fine["layer_smooth"]["readable"] == 20 and fine["layer_smooth"]["corrupt"] == 1
    assert fine["island_rough"]["intensity"]["max"] == 4000
    assert fine["island_rough"]["intensity"]["mean_of_means"] > fine["layer_smooth"]["intensity"]["mean_of_means"]
    binary = saved["per_binary_class"]
    assert binary["smooth"]["count"] == 30 and binary["rough"]["count"] == 13
    assert saved["imbalance_ratio"]["binary_class"] == round(30 / 13, 3)
    assert saved["class_weights"]["binary_class"] == {"rough": round(43 / (2 * 13), 4),
                                                      "smooth": round(43 / (2 * 30), 4)}
    assert result["class_weights"] == saved["class_weights"]


def test_analyze_split_folder_cli(tmp_path):
    src = make_dataset(tmp_path / "data_rheed")
    for bad in ("layer_smooth/seq001_000999.png", "island_smooth/seq002_000998.png"):
        (src / bad).unlink()
    dst = tmp_path / "data_rheed_split"
    split_dataset(str(src), str(dst), gap=1, similarity=False, verbose=False)
    out = tmp_path / "an"
    proc = run_cli(["scripts/analyze_dataset.py", dst, "--out", out], check=True)
    assert "split layout" in proc.stdout and "suggested weights" in proc.stdout
    saved = json.loads((out / "dataset_analysis.json").read_text())
    assert (out / "dataset_analysis.png").is_file()
    assert saved["layout"] == "split" and saved["weights_basis"] == "train split"
    manifest = (dst / "manifest.csv").read_text().splitlines()[1:]
    assert saved["n_images"] == len(manifest) and saved["n_corrupt"] == 0
    train = {c: sum(1 for row in manifest if row.endswith(",train") and f",{c}," in row) for c in ("smooth", "rough")}
    assert saved["per_split"]["train"] == train
    n = sum(train.values())
    assert saved["class_weights"]["binary_class"] == {c: round(n / (2 * k), 4) for c, k in sorted(train.items())}
    # the fine classes come back from the file-name prefix
    assert set(saved["per_fine_class"]) == set(COUNTS)
    from scripts.analyze_dataset import main
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "missing")])
    assert str(exc.value) == f"error: data folder not found: {tmp_path / 'missing'}"


def test_analyze_empty(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError, match="no images"):
        analyze_dataset(tmp_path, tmp_path / "out")
