import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import models.convnextv2 as convnextv2
from models.utils import GRN, LayerNorm
from conftest import randomize_

SIZES = {  # UPSTREAM_FACTS 3.1: constructor -> (depths, dims, params with a 1000-class head)
    "convnextv2_atto": ([2, 2, 6, 2], [40, 80, 160, 320], 3_708_400),
    "convnextv2_femto": ([2, 2, 6, 2], [48, 96, 192, 384], 5_233_240),
    "convnext_pico": ([2, 2, 6, 2], [64, 128, 256, 512], 9_066_280),
    "convnextv2_pico": ([2, 2, 6, 2], [64, 128, 256, 512], 9_066_280),
    "convnextv2_nano": ([2, 2, 8, 2], [80, 160, 320, 640], 15_623_800),
    "convnextv2_tiny": ([3, 3, 9, 3], [96, 192, 384, 768], 28_635_496),
    "convnextv2_base": ([3, 3, 27, 3], [128, 256, 512, 1024], 88_717_800),
    "convnextv2_large": ([3, 3, 27, 3], [192, 384, 768, 1536], 197_956_840),
    "convnextv2_huge": ([3, 3, 27, 3], [352, 704, 1408, 2816], 660_289_640),
}


def expected_keys(depths, dims, in_chans=3, num_classes=1000):
    """The dense state_dict table of UPSTREAM_FACTS 3.8, in order."""
    D = dims
    rows = [
        ("downsample_layers.0.0.weight", (D[0], in_chans, 4, 4)), ("downsample_layers.0.0.bias", (D[0],)),
        ("downsample_layers.0.1.weight", (D[0],)), ("downsample_layers.0.1.bias", (D[0],)),
    ]
    for i in (1, 2, 3):
        rows += [
            (f"downsample_layers.{i}.0.weight", (D[i - 1],)), (f"downsample_layers.{i}.0.bias", (D[i - 1],)),
            (f"downsample_layers.{i}.1.weight", (D[i], D[i - 1], 2, 2)), (f"downsample_layers.{i}.1.bias", (D[i],)),
        ]
    for s, depth in enumerate(depths):
        d = D[s]
        for b in range(depth):
            p = f"stages.{s}.{b}."
            rows += [
                (p + "dwconv.weight", (d, 1, 7, 7)), (p + "dwconv.bias", (d,)),
                (p + "norm.weight", (d,)), (p + "norm.bias", (d,)),
                (p + "pwconv1.weight", (4 * d, d)), (p + "pwconv1.bias", (4 * d,)),
                (p + "grn.gamma", (1, 1, 1, 4 * d)), (p + "grn.beta", (1, 1, 1, 4 * d)),
                (p + "pwconv2.weight", (d, 4 * d)), (p + "pwconv2.bias", (d,)),
            ]
    rows += [("norm.weight", (D[3],)), ("norm.bias", (D[3],)),
             ("head.weight", (num_classes, D[3])), ("head.bias", (num_classes,))]
    return rows


def build_meta(name, **kwargs):
    with torch.device("meta"):
        return convnextv2.__dict__[name](**kwargs)


def state_table(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", ["convnextv2_atto", "convnextv2_base"])
def test_state_dict_keys_and_shapes(name):
    depths, dims, _ = SIZES[name]
    model = convnextv2.convnextv2_atto() if name == "convnextv2_atto" else build_meta(name)
    table = state_table(model)
    assert table == expected_keys(depths, dims)
    assert len(table) == 20 + 10 * sum(depths)
    assert list(model.buffers()) == []


def test_state_dict_spot_checks():
    table = dict(state_table(build_meta("convnextv2_tiny")))
    assert table["stages.0.0.dwconv.weight"] == (96, 1, 7, 7)
    assert table["stages.0.0.pwconv1.weight"] == (384, 96)
    assert table["stages.0.0.grn.gamma"] == (1, 1, 1, 384)
    assert table["stages.0.0.pwconv2.weight"] == (96, 384)
    assert table["downsample_layers.1.1.weight"] == (192, 96, 2, 2)
    assert table["head.weight"] == (1000, 768)
    assert len(table) == 200
    table = dict(state_table(build_meta("convnextv2_atto", num_classes=2, in_chans=1)))
    assert table["downsample_layers.0.0.weight"] == (40, 1, 4, 4)
    assert table["head.weight"] == (2, 320)


@pytest.mark.parametrize("name", list(SIZES))
def test_parameter_counts(name):
    depths, _, params = SIZES[name]
    model = build_meta(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.depths == depths


def test_model_names_resolve():
    assert set(convnextv2.MODEL_NAMES) == set(SIZES)
    for name in convnextv2.MODEL_NAMES:
        assert callable(convnextv2.__dict__[name])


def test_pico_alias():
    torch.manual_seed(0)
    a = convnextv2.convnext_pico(num_classes=3)
    torch.manual_seed(0)
    b = convnextv2.convnextv2_pico(num_classes=3)
    assert state_table(a) == state_table(b)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka


def ref_layer_norm(x, weight, bias, dim):
    mean = x.mean(dim, keepdim=True)
    var = ((x - mean) ** 2).mean(dim, keepdim=True)
    shape = [1] * x.dim()
    shape[dim] = -1
    return (x - mean) / torch.sqrt(var + 1e-6) * weight.reshape(shape) + bias.reshape(shape)


def ref_forward(sd, x, depths):
    """ConvNeXtV2 written from the documented formulas (UPSTREAM_FACTS 3.2-3.5)."""
    x = F.conv2d(x, sd["downsample_layers.0.0.weight"], sd["downsample_layers.0.0.bias"], stride=4)
    x = ref_layer_norm(x, sd["downsample_layers.0.1.weight"], sd["downsample_layers.0.1.bias"], 1)
    for s, depth in enumerate(depths):
        if s > 0:
            p = f"downsample_layers.{s}."
            x = ref_layer_norm(x, sd[p + "0.weight"], sd[p + "0.bias"], 1)
            x = F.conv2d(x, sd[p + "1.weight"], sd[p + "1.bias"], stride=2)
        for b in range(depth):
            p = f"stages.{s}.{b}."
            y = F.conv2d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=x.shape[1])
            y = y.permute(0, 2, 3, 1)
            y = ref_layer_norm(y, sd[p + "norm.weight"], sd[p + "norm.bias"], 3)
            y = y @ sd[p + "pwconv1.weight"].t() + sd[p + "pwconv1.bias"]
            y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
            g = torch.sqrt((y ** 2).sum(dim=(1, 2), keepdim=True))
            nx = g / (g.mean(dim=3, keepdim=True) + 1e-6)
            y = sd[p + "grn.gamma"] * (y * nx) + sd[p + "grn.beta"] + y
            y = y @ sd[p + "pwconv2.weight"].t() + sd[p + "pwconv2.bias"]
            x = x + y.permute(0, 3, 1, 2)
    x = x.mean(dim=(2, 3))
    x = ref_layer_norm(x, sd["norm.weight"], sd["norm.bias"], 1)
    return x @ sd["head.weight"].t() + sd["head.bias"]


def test_forward_matches_reference():
    torch.manual_seed(0)
    model = convnextv2.convnextv2_atto(num_classes=5).eval()
    randomize_(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        expected = ref_forward(model.state_dict(), x, model.depths)
        features = model.forward_features(x)
    assert logits.shape == (2, 5) and features.shape == (2, 320)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert logits.std() > 0.1  # the random parameters make the check non-trivial


def test_init_rules():
    torch.manual_seed(0)
    model = convnextv2.convnextv2_tiny(num_classes=10)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(m.bias) == 0
            assert abs(m.weight.std().item() - 0.02) < 0.003
        elif isinstance(m, GRN):
            assert torch.count_nonzero(m.gamma) == 0 and torch.count_nonzero(m.beta) == 0
        elif isinstance(m, (LayerNorm, nn.LayerNorm)):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.count_nonzero(m.bias) == 0
            assert m.eps == 1e-6


def test_head_init_scale():
    torch.manual_seed(0)
    a = convnextv2.convnextv2_atto(num_classes=4)
    torch.manual_seed(0)
    b = convnextv2.convnextv2_atto(num_classes=4, head_init_scale=0.001)
    torch.testing.assert_close(b.head.weight, a.head.weight * 0.001)
    assert torch.equal(b.stages[0][0].dwconv.weight, a.stages[0][0].dwconv.weight)


def test_drop_path_schedule():
    model = build_meta("convnextv2_atto", drop_path_rate=0.1)
    blocks = [blk for stage in model.stages for blk in stage]
    expected = torch.linspace(0, 0.1, 12).tolist()
    assert isinstance(blocks[0].drop_path, nn.Identity)
    for blk, rate in zip(blocks[1:], expected[1:]):
        assert type(blk.drop_path).__name__ == "DropPath"
        assert blk.drop_path.drop_prob == pytest.approx(rate)
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.1)
    no_drop = build_meta("convnextv2_atto")
    assert all(isinstance(blk.drop_path, nn.Identity) for stage in no_drop.stages for blk in stage)


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    model = convnextv2.convnextv2_atto(drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_layer_norm_formats():
    x = torch.randn(2, 5, 3, 4)
    ln = LayerNorm(5, data_format="channels_first")
    with torch.no_grad():
        ln.weight.copy_(torch.randn(5))
        ln.bias.copy_(torch.randn(5))
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (5,), ln.weight, ln.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref)
    last = LayerNorm(5)
    last.load_state_dict(ln.state_dict())
    torch.testing.assert_close(last(x.permute(0, 2, 3, 1)), ref.permute(0, 2, 3, 1))
    assert ln.eps == 1e-6
    with pytest.raises(NotImplementedError):
        LayerNorm(5, data_format="nhwc")


def test_grn_formula_and_visible_statistics():
    grn = GRN(6)
    x = torch.randn(2, 4, 4, 6)
    torch.testing.assert_close(grn(x), x)  # zero init is the identity
    with torch.no_grad():
        grn.gamma.copy_(torch.randn(1, 1, 1, 6))
        grn.beta.copy_(torch.randn(1, 1, 1, 6))
    g = torch.sqrt((x ** 2).sum(dim=(1, 2), keepdim=True))
    nx = g / (g.mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(grn(x), grn.gamma * (x * nx) + grn.beta + x)
    # with a mask, the statistic of sample n uses its visible positions only
    keep = torch.ones(2, 4, 4, 1)
    keep[0, :2] = 0
    keep[1, :, 3] = 0
    out = grn(x, keep)
    for n in range(2):
        vis = x[n][keep[n, ..., 0] > 0]  # (num_visible, C)
        gn = torch.sqrt((vis ** 2).sum(0))
        nxn = gn / (gn.mean() + 1e-6)
        torch.testing.assert_close(out[n], grn.gamma[0] * (x[n] * nxn) + grn.beta[0] + x[n])
