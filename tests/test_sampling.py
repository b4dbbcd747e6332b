"""Class-balanced training sampler (rheed/sampling.py, main_finetune.py --balanced_sampler)."""
import json
from collections import Counter

from conftest import run_cli
from rheed.sampling import BalancedSampler


def test_classes_are_drawn_equally_often_deterministically_and_split_across_replicas():
    targets = [0] * 20 + [1] * 180
    sampler = BalancedSampler(targets, seed=3)
    counts = Counter()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        counts.update(targets[i] for i in sampler)
    assert len(sampler) == 200 and abs(counts[0] / sum(counts.values()) - 0.5) < 0.03
    sampler.set_epoch(1)
    first = list(sampler)
    assert first == list(sampler) and first != list(BalancedSampler(targets, seed=4))
    sampler.set_epoch(2)
    assert list(sampler) != first
    parts = [BalancedSampler(targets, num_replicas=3, rank=r, seed=3) for r in range(3)]
    for part in parts:
        part.set_epoch(1)
    assert [len(p) for p in parts] == [67, 67, 67]
    draw = parts[0].draw().tolist()                            # one draw of 201, shared by the three ranks
    assert all(list(p) == draw[r::3] for r, p in enumerate(parts)) and len(draw) == 201


def test_finetune_with_balanced_sampler_runs_and_says_it_overlaps_class_weights(tiny_split, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(["main_finetune.py", "--device", "cpu", "--model", "convnextv2_atto", "--data_set", "RHEED",
                    "--data_path", tiny_split, "--input_size", "64", "--epochs", "1", "--batch_size", "8",
                    "--num_workers", "0", "--pin_mem", "false", "--balanced_sampler", "true",
                    "--class_weights", "auto", "--output_dir", out], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "BalancedSampler" in proc.stdout and "usually one is enough" in proc.stderr
    assert json.loads((out / "test_metrics.json").read_text())["num_samples"] == 10
