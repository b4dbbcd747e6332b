import math

import pytest
import torch
import torch.nn.functional as F

import models.convnextv2 as convnextv2
import models.fcmae as fcmae
from models.utils import load_pretrained_weights
from conftest import randomize_

FCMAE_PARAMS = {  # UPSTREAM_FACTS 4.10 (decoder_embed_dim 512, decoder_depth 1)
    "convnextv2_atto": 7_257_992, "convnextv2_femto": 8_751_472, "convnextv2_pico": 12_521_792,
    "convnextv2_nano": 19_016_592, "convnextv2_tiny": 31_965_568, "convnextv2_base": 91_922_432,
    "convnextv2_large": 200_910_592, "convnextv2_huge": 662_616_192,
}


@pytest.fixture(scope="module")
def atto():
    torch.manual_seed(0)
    model = fcmae.convnextv2_atto(decoder_embed_dim=64).eval()
    randomize_(model)
    return model


def fixed_mask():
    # 2 samples on a 2x2 patch grid (64 px): 1 = removed
    return torch.tensor([[1., 0., 1., 0.], [0., 1., 1., 1.]])


def ln(x, weight, bias, dim):
    mean = x.mean(dim, keepdim=True)
    var = ((x - mean) ** 2).mean(dim, keepdim=True)
    shape = [1] * x.dim()
    shape[dim] = -1
    return (x - mean) / torch.sqrt(var + 1e-6) * weight.reshape(shape) + bias.reshape(shape)


def ref_masked_encoder(sd, x, mask, depths):
    """The sparse encoder's semantics from UPSTREAM_FACTS 4.4/4.5 (check (d)), with per-sample GRN."""
    n, h = x.shape[0], x.shape[2] // 32
    keep_patch = (1 - mask).reshape(n, 1, h, h)
    keeps = [F.interpolate(keep_patch, scale_factor=2 ** (3 - s), mode="nearest") for s in range(4)]
    x = F.conv2d(x, sd["encoder.downsample_layers.0.0.weight"], sd["encoder.downsample_layers.0.0.bias"], stride=4)
    x = ln(x, sd["encoder.downsample_layers.0.1.weight"], sd["encoder.downsample_layers.0.1.bias"], 1) * keeps[0]
    for s, depth in enumerate(depths):
        if s > 0:
            p = f"encoder.downsample_layers.{s}."
            x = ln(x, sd[p + "0.weight"], sd[p + "0.bias"], 1) * keeps[s - 1]
            x = F.conv2d(x, sd[p + "1.weight"], sd[p + "1.bias"], stride=2) * keeps[s]
        for b in range(depth):
            p = f"encoder.stages.{s}.{b}."
            y = F.conv2d(x * keeps[s], sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=x.shape[1])
            y = (y * keeps[s]).permute(0, 2, 3, 1)
            y = ln(y, sd[p + "norm.weight"], sd[p + "norm.bias"], 3)
            y = y @ sd[p + "pwconv1.weight"].t() + sd[p + "pwconv1.bias"]
            y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
            visible = y * keeps[s].permute(0, 2, 3, 1)
            g = torch.sqrt((visible ** 2).sum(dim=(1, 2), keepdim=True))  # per sample, visible sites only
            y = sd[p + "grn.gamma"] * (y * g / (g.mean(dim=3, keepdim=True) + 1e-6)) + sd[p + "grn.beta"] + y
            y = y @ sd[p + "pwconv2.weight"].t() + sd[p + "pwconv2.bias"]
            x = x + y.permute(0, 3, 1, 2) * keeps[s]
    return x


def test_masked_encoder_matches_reference(atto):
    x = torch.randn(2, 3, 64, 64)
    mask = fixed_mask()
    with torch.no_grad():
        out = atto.encoder(x, mask)
        ref = ref_masked_encoder(atto.state_dict(), x, mask, atto.depths)
    assert out.shape == (2, 320, 2, 2)
    assert out.abs().max() > 1  # outputs reach ~8 with the random parameters: tolerances are ~1e-5 relative
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=5e-5)
    assert torch.all(out.permute(0, 2, 3, 1).reshape(2, 4, 320)[mask.bool()] == 0)
    # per-sample statistics: a sample's output does not depend on the rest of the batch
    with torch.no_grad():
        single = atto.encoder(x[1:], mask[1:])
    torch.testing.assert_close(single, out[1:], rtol=1e-5, atol=5e-5)


def test_masked_pixels_do_not_change_pred(atto):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 96, 96)
    mask = torch.tensor([[1., 0., 1., 0., 1., 0., 1., 1., 0.], [0., 1., 1., 1., 0., 1., 1., 0., 1.]])
    pixel_mask = mask.reshape(2, 1, 3, 3).repeat_interleave(32, 2).repeat_interleave(32, 3)
    x2 = x * (1 - pixel_mask) + 10 * torch.randn_like(x) * pixel_mask
    with torch.no_grad():
        _, pred, _ = atto(x, mask=mask)
        _, pred2, _ = atto(x2, mask=mask)
        _, pred3, _ = atto(x2, mask=torch.zeros(2, 9))
    assert (pred - pred2).abs().max() <= 1e-6
    assert (pred - pred3).abs().max() > 1e-2  # with nothing masked the change is visible


def test_zero_mask_ratio_equals_dense_model(atto):
    dense = convnextv2.convnextv2_atto().eval()
    report = load_pretrained_weights(dense, {"model": atto.state_dict()})
    assert sorted(report["missing"]) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feat, mask = atto.forward_encoder(x, mask_ratio=0.)
        ref = x
        for downsample, stage in zip(dense.downsample_layers, dense.stages):
            ref = stage(downsample(ref))
    assert torch.count_nonzero(mask) == 0
    torch.testing.assert_close(feat, ref, rtol=1e-5, atol=1e-5)


def test_encoder_state_dict_loads_into_classifier(atto):
    sd = atto.state_dict()
    assert list(sd)[0] == "mask_token" and len(sd) == 151
    dense = convnextv2.convnextv2_atto(num_classes=2)
    report = load_pretrained_weights(dense, {"model": sd})
    assert sorted(report["missing"]) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert report["unexpected"] == [] and report["mismatched"] == []
    for key, value in dense.state_dict().items():
        if not key.startswith(("norm.", "head.")):
            assert torch.equal(value, sd["encoder." + key]), key
    encoder_keys = [k[len("encoder."):] for k in sd if k.startswith("encoder.")]
    assert encoder_keys == [k for k in dense.state_dict() if not k.startswith(("norm.", "head."))]


def test_mask_convention():
    model = fcmae.convnextv2_atto(decoder_embed_dim=32)
    x = torch.zeros(3, 3, 128, 128)
    torch.manual_seed(5)
    mask = model.gen_random_mask(x, 0.6)
    torch.manual_seed(5)
    noise = torch.randn(3, 16)
    assert mask.shape == (3, 16) and mask.dtype == torch.float32
    assert torch.all(mask.sum(1) == 16 - int(16 * 0.4))
    kept = torch.argsort(noise, dim=1)[:, :6]  # the smallest noise stays visible (0)
    assert torch.all(torch.gather(mask, 1, kept) == 0)
    assert set(mask.unique().tolist()) == {0., 1.}
    # 224 px, ratio 0.6: 49 patches, 19 kept
    assert model.gen_random_mask(torch.zeros(2, 3, 224, 224), 0.6).sum(1).tolist() == [30., 30.]


def test_masked_patches_are_zero_in_encoder_output_and_grid_is_row_major(atto):
    x = torch.randn(1, 3, 128, 128)
    mask = torch.zeros(1, 16)
    mask[0, 1 * 4 + 2] = 1  # patch row 1, column 2
    mask[0, 12:] = 1  # the whole last patch row: the output keeps its full size
    with torch.no_grad():
        out = atto.encoder(x, mask)
    assert out.shape == (1, 320, 4, 4)
    assert torch.all(out[0, :, 1, 2] == 0) and torch.all(out[0, :, 3, :] == 0)
    assert torch.all(out[0, :, 0, :].abs().sum(0) > 0)


def test_patchify_order_and_inverse():
    model = fcmae.convnextv2_atto(decoder_embed_dim=32)
    imgs = torch.randn(2, 3, 64, 96)
    patches = model.patchify(imgs)
    p, w = 32, 3
    assert patches.shape == (2, 6, p * p * 3)
    for (i, j, r, s, c) in [(0, 0, 0, 0, 0), (1, 2, 5, 31, 2), (0, 1, 31, 0, 1), (1, 0, 7, 9, 2)]:
        assert patches[1, i * w + j, (r * p + s) * 3 + c] == imgs[1, c, i * p + r, j * p + s]
    assert torch.equal(model.unpatchify(patches, 2, 3), imgs)
    square = torch.randn(2, 3, 64, 64)
    assert torch.equal(model.unpatchify(model.patchify(square)), square)


def test_loss_over_masked_patches_only(atto):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    mask = fixed_mask()
    with torch.no_grad():
        loss, pred, out_mask = atto(x, mask=mask)
    assert pred.shape == (2, 32 * 32 * 3, 2, 2)
    assert torch.equal(out_mask, mask)
    pred_patches = pred.reshape(2, 3072, 4).transpose(1, 2)
    per_patch = ((pred_patches - atto.patchify(x)) ** 2).mean(-1)
    expected = sum(per_patch[n, l] for n in range(2) for l in range(4) if mask[n, l] == 1) / 5
    torch.testing.assert_close(loss, expected)
    # visible patches do not enter the loss
    pred_changed = pred.clone().reshape(2, 3072, 2, 2)
    pred_changed[0, :, 0, 1] += 100.
    torch.testing.assert_close(atto.forward_loss(x, pred_changed, mask), loss)


def test_norm_pix_loss():
    torch.manual_seed(3)
    model = fcmae.convnextv2_atto(decoder_embed_dim=32, norm_pix_loss=True)
    imgs = torch.rand(1, 3, 64, 64) * 5 + 2
    pred = torch.randn(1, 4, 3072)
    mask = torch.tensor([[0., 1., 1., 0.]])
    target = model.patchify(imgs)
    mean = target.sum(-1, keepdim=True) / 3072
    var = ((target - mean) ** 2).sum(-1, keepdim=True) / (3072 - 1)  # unbiased
    normed = (target - mean) / torch.sqrt(var + 1e-6)
    per_patch = ((pred - normed) ** 2).mean(-1)
    expected = (per_patch[0, 1] + per_patch[0, 2]) / 2
    torch.testing.assert_close(model.forward_loss(imgs, pred, mask), expected)


def test_init_is_the_encoder_init():
    torch.manual_seed(0)
    model = fcmae.convnextv2_atto()
    sd = model.state_dict()
    assert abs(sd["mask_token"].std().item() - 0.02) < 0.005
    for key in ("encoder.stages.2.0.dwconv.weight", "encoder.stages.2.0.pwconv1.weight",
                "decoder.0.pwconv1.weight", "decoder.0.dwconv.weight", "pred.weight", "proj.weight"):
        assert abs(sd[key].std().item() - 0.02) < 0.003, key  # not upstream's std 1.0
    assert torch.count_nonzero(sd["decoder.0.grn.gamma"]) == 0
    assert torch.count_nonzero(sd["encoder.stages.0.0.grn.beta"]) == 0
    assert torch.count_nonzero(sd["pred.bias"]) == 0


@pytest.mark.parametrize("name", list(FCMAE_PARAMS))
def test_parameter_counts(name):
    with torch.device("meta"):
        model = fcmae.__dict__[name]()
    assert sum(p.numel() for p in model.parameters()) == FCMAE_PARAMS[name]
    assert len(model.state_dict()) == 21 + 10 * sum(model.depths) + 10
    assert name in fcmae.MODEL_NAMES


def test_short_overfit_lowers_loss():
    """Overfit one fixed batch and mask: AdamW must cut the loss by more than half (gradients flow)."""
    torch.manual_seed(0)
    model = fcmae.convnextv2_atto(decoder_embed_dim=128, norm_pix_loss=True)
    yy, xx = torch.meshgrid(torch.arange(64.), torch.arange(64.), indexing="ij")
    imgs = torch.stack([torch.stack([torch.sin(xx / (3 + k) + c) * torch.cos(yy / (4 + c)) for c in range(3)])
                        for k in range(4)])
    mask = torch.tensor([[1., 0., 1., 1.], [0., 1., 1., 0.], [1., 1., 0., 1.], [1., 1., 1., 0.]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    losses = []
    for _ in range(20):
        loss, _, _ = model(imgs, mask=mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert model.encoder.stages[0][0].dwconv.weight.grad.abs().sum() > 0
    assert model.mask_token.grad.abs().sum() > 0
    assert losses[-1] < 0.5 * losses[0], losses
