"""benchmarks/camera_augmented_split.py: a split whose training frames are also re-recorded by random cameras."""
import importlib.util

from conftest import REPO, run_cli

spec = importlib.util.spec_from_file_location("camera_augmented_split",
                                              REPO / "benchmarks" / "camera_augmented_split.py")
A = importlib.util.module_from_spec(spec)
spec.loader.exec_module(A)


def test_cli_writes_variants_links_the_rest_and_refuses_an_existing_folder(tmp_path, tiny_split):
    out = tmp_path / "cam"
    proc = run_cli(["benchmarks/camera_augmented_split.py", "--data", tiny_split, "--out", out, "--variants", "2"])
    assert proc.returncode == 0, proc.stderr
    assert "48 camera variants of 24 training frames" in proc.stdout
    for label in ("rough", "smooth"):   # every frame three times: the class ratio is unchanged
        assert len(list((out / "train" / label).iterdir())) == 3 * len(list((tiny_split / "train" / label).iterdir()))
    assert (out / "val").resolve() == (tiny_split / "val").resolve() and (out / "test").is_symlink()
    original = out / "train" / "smooth" / "smooth_000.png"
    assert original.is_symlink()
    assert original.resolve() == (tiny_split / "train" / "smooth" / "smooth_000.png").resolve()
    variants = sorted((out / "train" / "smooth").glob("smooth_000_cam*"))
    assert [v.stem for v in variants] == ["smooth_000_cam0", "smooth_000_cam1"]

    again = run_cli(["benchmarks/camera_augmented_split.py", "--data", tiny_split, "--out", out])
    assert again.returncode != 0 and again.stderr.strip().splitlines()[-1] == f"error: {out} exists; choose a new --out"
    assert len(list((out / "train" / "smooth").iterdir())) == 3 * 16           # nothing rewritten or removed

    missing = run_cli(["benchmarks/camera_augmented_split.py", "--data", tmp_path / "nope", "--out", tmp_path / "x"])
    assert missing.returncode != 0 and "nope/train is not a folder" in missing.stderr
    assert not (tmp_path / "x").exists()
