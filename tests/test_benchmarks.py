"""The manual benchmark scripts stay runnable: each imports and prints its help."""
import pytest

from conftest import REPO, run_cli


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "benchmarks").glob("*.py")))
def test_benchmark_script_imports_and_has_help(script):
    proc = run_cli([f"benchmarks/{script}", "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout
