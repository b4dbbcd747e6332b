import argparse
import math

import pytest
import torch
import torch.nn as nn

import timm_compat  # noqa: F401
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

from rheed.errors import UserError
from rheed.losses import WeightedSoftTargetCrossEntropy, build_criterion, compute_class_weights


def make_args(**kw):
    base = dict(mixup=0.0, cutmix=0.0, cutmix_minmax=None, smoothing=0.0, class_weights="none",
                class_weights_beta=0.999)
    base.update(kw)
    return argparse.Namespace(**base)


def test_weighted_soft_target_hand_computed():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    w = torch.tensor([1.0, 3.0])
    loss = WeightedSoftTargetCrossEntropy(w)(logits, target)
    # log-softmax by hand
    lp0 = [2 - math.log(math.exp(2) + 1), -math.log(math.exp(2) + 1)]
    lp1 = [-math.log(1 + math.e), 1 - math.log(1 + math.e)]
    num = -(1 * 0.7 * lp0[0] + 3 * 0.3 * lp0[1] + 1 * 0.2 * lp1[0] + 3 * 0.8 * lp1[1])
    den = (1 * 0.7 + 3 * 0.3) + (1 * 0.2 + 3 * 0.8)
    assert loss.item() == pytest.approx(num / den, rel=1e-6)


def test_weighted_hard_labels_equal_torch_weighted_ce():
    torch.manual_seed(0)
    logits = torch.randn(9, 3)
    target = torch.randint(0, 3, (9,))
    w = torch.tensor([0.5, 2.0, 1.5])
    ours = WeightedSoftTargetCrossEntropy(w)(logits, target)
    ref = nn.CrossEntropyLoss(weight=w)(logits, target)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)


def test_unit_weights_equal_upstream_criteria():
    torch.manual_seed(1)
    logits = torch.randn(8, 4)
    hard = torch.randint(0, 4, (8,))
    soft = torch.softmax(torch.randn(8, 4), dim=-1)
    ones = torch.ones(4)
    # soft targets (Mixup/CutMix)
    assert WeightedSoftTargetCrossEntropy(ones)(logits, soft).item() == pytest.approx(
        SoftTargetCrossEntropy()(logits, soft).item(), rel=1e-6)
    # label smoothing
    assert WeightedSoftTargetCrossEntropy(ones, smoothing=0.1)(logits, hard).item() == pytest.approx(
        LabelSmoothingCrossEntropy(0.1)(logits, hard).item(), rel=1e-6)
    # hard labels
    assert WeightedSoftTargetCrossEntropy(ones)(logits, hard).item() == pytest.approx(
        nn.CrossEntropyLoss()(logits, hard).item(), rel=1e-6)
    # the weight scale cancels
    assert WeightedSoftTargetCrossEntropy(ones * 7)(logits, soft).item() == pytest.approx(
        SoftTargetCrossEntropy()(logits, soft).item(), rel=1e-6)


def test_build_criterion_unweighted_uses_upstream_classes():
    counts = [10, 30]
    assert type(build_criterion(make_args(mixup=0.8), counts)) is SoftTargetCrossEntropy
    assert type(build_criterion(make_args(cutmix_minmax=[0.2, 0.8]), counts)) is SoftTargetCrossEntropy
    ls = build_criterion(make_args(smoothing=0.1), counts)
    assert type(ls) is LabelSmoothingCrossEntropy and ls.smoothing == pytest.approx(0.1)
    ce = build_criterion(make_args(), counts)
    assert type(ce) is nn.CrossEntropyLoss and ce.weight is None


def test_build_criterion_weighted():
    counts = [10, 30]
    crit = build_criterion(make_args(mixup=0.8, smoothing=0.1, class_weights="auto"), counts)
    assert isinstance(crit, WeightedSoftTargetCrossEntropy) and crit.smoothing == 0.0
    assert torch.allclose(crit.weight, torch.tensor([1.5, 0.5]))
    crit = build_criterion(make_args(smoothing=0.2, class_weights="1,2"), counts)
    assert isinstance(crit, WeightedSoftTargetCrossEntropy) and crit.smoothing == pytest.approx(0.2)
    crit = build_criterion(make_args(class_weights="auto"), counts)
    assert type(crit) is nn.CrossEntropyLoss and torch.allclose(crit.weight, torch.tensor([1.5, 0.5]))


def test_class_weight_values():
    assert compute_class_weights("none", [3, 9]) is None
    # inverse frequency, mean 1: 1/10 : 1/30 = 3 : 1 -> 1.5, 0.5
    assert torch.allclose(compute_class_weights("auto", [10, 30]), torch.tensor([1.5, 0.5]))
    w = compute_class_weights("auto", [5, 10, 20])
    assert w.mean().item() == pytest.approx(1.0) and w[0] / w[2] == pytest.approx(4.0)
    beta = 0.9
    raw = [(1 - beta) / (1 - beta ** n) for n in (2, 8)]
    expected = torch.tensor([r / (sum(raw) / 2) for r in raw])
    assert torch.allclose(compute_class_weights("effective", [2, 8], beta), expected)
    assert torch.allclose(compute_class_weights("0.25, 4", [2, 8]), torch.tensor([0.25, 4.0]))


@pytest.mark.parametrize("spec", ["1,2,3", "1", "a,b", "1,-2", "0,1", "1,nan"])
def test_bad_explicit_weights(spec):
    with pytest.raises(UserError):
        compute_class_weights(spec, [4, 4])


def test_auto_weights_need_every_class():
    with pytest.raises(UserError, match="no training images"):
        compute_class_weights("auto", [4, 0])


def test_focal_loss_hand_computed_and_reduces_to_cross_entropy():
    from rheed.losses import FocalLoss
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.4]])
    target = torch.tensor([0, 1, 1])
    w = torch.tensor([1.0, 3.0])
    assert FocalLoss(0.0, w)(logits, target).item() == pytest.approx(
        nn.CrossEntropyLoss(weight=w)(logits, target).item(), rel=1e-6)
    p = torch.softmax(logits, dim=1)[torch.arange(3), target]
    wt = w[target]
    expected = (-(wt * (1 - p) ** 2 * p.log()).sum() / wt.sum()).item()
    assert FocalLoss(2.0, w)(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # an easy frame (p = 0.88) is down-weighted far more than a hard one (p = 0.48)
    easy, hard = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, -0.1]])
    y = torch.tensor([0])
    ratio_easy = FocalLoss(2.0)(easy, y) / nn.CrossEntropyLoss()(easy, y)
    ratio_hard = FocalLoss(2.0)(hard, y) / nn.CrossEntropyLoss()(hard, y)
    assert ratio_easy < 0.05 < 0.2 < ratio_hard


def test_build_criterion_focal():
    from rheed.losses import FocalLoss
    crit = build_criterion(make_args(focal_gamma=2.0, class_weights="auto", smoothing=0.1), [10, 30])
    assert isinstance(crit, FocalLoss) and crit.gamma == 2.0 and crit.smoothing == pytest.approx(0.1)
    assert torch.allclose(crit.weight, torch.tensor([1.5, 0.5]))
    assert build_criterion(make_args(focal_gamma=1.0, mixup=0.8), [10, 30]).smoothing == 0.0
    with pytest.raises(UserError, match="focal_gamma"):
        build_criterion(make_args(focal_gamma=-1.0), [10, 30])
