"""The manual benchmark scripts stay runnable (each imports and prints its help); bench_predict measures the launchers' own
preprocessing."""
import pytest

from conftest import REPO, run_cli


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")))
def test_benchmark_script_imports_and_has_help(script):
    proc = run_cli([f"benchmarks/{script}", "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout


@pytest.mark.parametrize("script", ["run_finetune_cpu.sh", "run_finetune_balanced_gpu.sh"])
def test_bench_predict_checkpoint_carries_the_launcher_preprocessing(script):
    from benchmarks.bench_predict import launcher_args
    args = launcher_args(script, "convnextv2_femto", 96)
    assert (args["model"], args["input_size"], args["finetune"]) == ("convnextv2_femto", 96, "")
    assert args["aug_mode"] == "rheed" and args["despeckle"] and args["subtract_background"]
    assert args["background_mode"] == "adaptive" and args["pad_aspect"] == pytest.approx(4 / 3)
    assert args["tta_scales"] == [1.0, 1.125]
