import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rheed.metrics import compute_metrics, gather_predictions


def test_two_class_metrics_by_hand():
    names = ["rough", "smooth"]
    # true: 3 rough, 5 smooth. predictions: rough -> R R S ; smooth -> S S S S R
    y_true = [0, 0, 0, 1, 1, 1, 1, 1]
    p_rough = np.array([0.9, 0.8, 0.4, 0.3, 0.2, 0.1, 0.45, 0.6])
    probs = np.stack([p_rough, 1 - p_rough], axis=1)
    m = compute_metrics(y_true, probs, names)
    assert m["num_samples"] == 8 and m["class_names"] == names
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion_matrix"] == [[2, 1], [1, 4]]
    pr, rr = 2 / 3, 2 / 3
    ps, rs = 4 / 5, 4 / 5
    f_r = 2 * pr * rr / (pr + rr)
    f_s = 2 * ps * rs / (ps + rs)
    assert m["per_class"]["rough"] == pytest.approx({"precision": pr, "recall": rr, "f1": f_r, "support": 3})
    assert m["per_class"]["smooth"] == pytest.approx({"precision": ps, "recall": rs, "f1": f_s, "support": 5})
    assert m["macro_f1"] == pytest.approx((f_r + f_s) / 2)
    assert m["balanced_accuracy"] == pytest.approx((rr + rs) / 2)
    # ROC-AUC with 'rough' positive: fraction of (rough, smooth) pairs ranked correctly by p_rough.
    pos, neg = p_rough[:3], p_rough[3:]
    auc = np.mean([[1.0 if a > b else 0.5 if a == b else 0.0 for b in neg] for a in pos])
    assert m["positive_class"] == "rough"
    assert m["roc_auc"] == pytest.approx(auc)


def test_positive_class_defaults_to_second_without_rough():
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    m = compute_metrics([0, 1, 1], probs, ["a", "b"])
    assert m["positive_class"] == "b"
    assert m["roc_auc"] == pytest.approx(1.0)  # b-scores: 0.7, 0.4 both above a's 0.2


def test_three_classes_with_absent_class():
    names = ["a", "b", "c"]
    # no true 'c'; one sample predicted as 'c'
    y_true = [0, 0, 1, 1]
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    m = compute_metrics(y_true, probs, names)
    assert m["confusion_matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # recall a = 0.5, b = 0.5; c absent is skipped
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert "roc_auc" not in m


def test_single_class_val_set_has_no_auc():
    m = compute_metrics([1, 1], np.array([[0.2, 0.8], [0.6, 0.4]]), ["rough", "smooth"])
    assert m["roc_auc"] is None and m["accuracy"] == pytest.approx(0.5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank, world_size, port, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    n = 7
    labels_all = torch.arange(n) % 2
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False)
    local_idx = torch.tensor(list(sampler))  # 4 indices per rank; rank 1 repeats index 0
    probs = torch.stack([local_idx.float() / 10, 1 - local_idx.float() / 10], dim=1)
    idx, p, y, loss = gather_predictions(local_idx, probs, labels_all[local_idx], local_idx.float())
    if rank == 0:
        queue.put((len(local_idx), idx.tolist(), p.tolist(), y.tolist(), loss.tolist()))
    dist.barrier()
    dist.destroy_process_group()


def test_distributed_gather_counts_every_sample_once():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_gather_worker, args=(2, _free_port(), queue), nprocs=2, start_method="spawn")
    per_rank, idx, probs, labels, losses = queue.get(timeout=60)
    assert per_rank * 2 == 8  # the sampler padded 7 samples to 8
    assert idx == list(range(7))
    assert labels == [i % 2 for i in range(7)]
    assert losses == [float(i) for i in range(7)]
    assert np.allclose(np.array(probs)[:, 0], np.arange(7) / 10)
