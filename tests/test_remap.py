import pytest
import torch

import models.convnextv2 as convnextv2
import models.fcmae as fcmae
from models.utils import load_pretrained_weights, remap_checkpoint_keys
from rheed.errors import UserError

HEAD_AND_NORM = ["head.bias", "head.weight", "norm.bias", "norm.weight"]


def dense_to_minkowski_kernel(weight, depthwise=False):
    """Inverse of the documented remap: K[x*ks + y, i, o] = W[o, i, y, x]; depthwise K[x*ks + y, c] = W[c, 0, y, x]."""
    out_ch, in_ch, ks, _ = weight.shape
    if depthwise:
        return weight[:, 0].permute(2, 1, 0).reshape(ks * ks, out_ch)
    return weight.permute(3, 2, 1, 0).reshape(ks * ks, in_ch, out_ch)


def official_fcmae_checkpoint(model):
    """An FCMAE state_dict in the MinkowskiEngine layout of UPSTREAM_FACTS 4.10, built from a dense FCMAE."""
    sd = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] != "encoder" or parts[1:3] == ["downsample_layers", "0"]:
            sd[key] = value.clone()  # mask_token, stem, proj, decoder, pred: dense in upstream too
        elif parts[1] == "downsample_layers" and parts[3] == "0":  # sparse LayerNorm
            sd[".".join(parts[:4] + ["ln", parts[4]])] = value.clone()
        elif parts[1] == "downsample_layers":  # sparse 2x2 convolution
            if parts[-1] == "weight":
                sd[".".join(parts[:4] + ["kernel"])] = dense_to_minkowski_kernel(value)
            else:
                sd[key] = value.reshape(1, -1).clone()
        else:  # encoder.stages.s.b.<layer>.<param>
            layer, param = parts[-2], parts[-1]
            prefix = ".".join(parts[:-2])
            if layer == "dwconv" and param == "weight":
                sd[f"{prefix}.dwconv.kernel"] = dense_to_minkowski_kernel(value, depthwise=True)
            elif layer == "dwconv":
                sd[key] = value.reshape(1, -1).clone()
            elif layer == "norm":
                sd[f"{prefix}.norm.ln.{param}"] = value.clone()
            elif layer in ("pwconv1", "pwconv2"):
                sd[f"{prefix}.{layer}.linear.{param}"] = value.clone()
            elif layer == "grn":
                sd[key] = value.reshape(1, -1).clone()
    return sd


@pytest.fixture(scope="module")
def pretrained():
    torch.manual_seed(0)
    model = fcmae.convnextv2_atto(decoder_embed_dim=64)
    with torch.no_grad():  # non-zero GRN/LN values, so that dropped or zeroed weights would show
        for name, p in model.named_parameters():
            if ".grn." in name or ".norm." in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_official_layout_matches_documented_shapes(pretrained):
    sd = official_fcmae_checkpoint(pretrained)
    assert len(sd) == 21 + 10 * 12 + 10
    assert list(sd)[0] == "mask_token"
    assert sd["encoder.downsample_layers.1.1.kernel"].shape == (4, 40, 80)
    assert sd["encoder.downsample_layers.1.1.bias"].shape == (1, 80)
    assert sd["encoder.downsample_layers.1.0.ln.weight"].shape == (40,)
    assert sd["encoder.stages.0.0.dwconv.kernel"].shape == (49, 40)
    assert sd["encoder.stages.0.0.dwconv.bias"].shape == (1, 40)
    assert sd["encoder.stages.0.0.norm.ln.weight"].shape == (40,)
    assert sd["encoder.stages.0.0.pwconv1.linear.weight"].shape == (160, 40)
    assert sd["encoder.stages.0.0.pwconv1.linear.bias"].shape == (160,)
    assert sd["encoder.stages.0.0.grn.gamma"].shape == (1, 160)
    assert sd["decoder.0.grn.gamma"].shape == (1, 1, 1, 256)


def test_kernel_index_orientation():
    # flat kernel index = i_h + ks * i_w: entry 1*7 + 2 is row y = 2, column x = 1
    kernel = torch.zeros(49, 3, 5)
    kernel[1 * 7 + 2, 1, 4] = 1.
    weight = remap_checkpoint_keys({"stages.0.0.dwconv.kernel": kernel})["stages.0.0.dwconv.weight"]
    assert weight.shape == (5, 3, 7, 7)
    assert weight[4, 1, 2, 1] == 1 and weight.sum() == 1
    depthwise = torch.zeros(4, 6)
    depthwise[0 * 2 + 1, 5] = 1.
    weight = remap_checkpoint_keys({"encoder.x.kernel": depthwise})["x.weight"]
    assert weight.shape == (6, 1, 2, 2) and weight[5, 0, 1, 0] == 1 and weight.sum() == 1


def test_official_checkpoint_loads_into_classifier(pretrained):
    checkpoint = {"model": official_fcmae_checkpoint(pretrained), "epoch": 1599}
    model = convnextv2.convnextv2_atto(num_classes=2)
    report = load_pretrained_weights(model, checkpoint)
    assert sorted(report["missing"]) == HEAD_AND_NORM
    assert report["unexpected"] == [] and report["mismatched"] == []
    original = pretrained.state_dict()
    for key, value in model.state_dict().items():
        if key not in HEAD_AND_NORM:
            assert torch.equal(value, original["encoder." + key]), key
    assert model.stages[0][0].grn.gamma.shape == (1, 1, 1, 160)
    assert torch.count_nonzero(model.stages[0][0].grn.gamma) > 0


def test_remap_drops_pretraining_modules(pretrained):
    remapped = remap_checkpoint_keys(official_fcmae_checkpoint(pretrained))
    assert not any(k.split(".")[0] in ("decoder", "mask_token", "proj", "pred", "encoder") for k in remapped)
    assert len(remapped) == 140 - 4


def test_pt_only_dense_named_checkpoint(pretrained):
    # published pt_only files: dense names without 'encoder.'; GRN as (1, 1, 1, C) or (1, C)
    encoder = {k[len("encoder."):]: v for k, v in pretrained.state_dict().items() if k.startswith("encoder.")}
    for grn_2d in (False, True):
        sd = {k: (v.reshape(1, -1) if grn_2d and ".grn." in k else v) for k, v in encoder.items()}
        model = convnextv2.convnextv2_atto(num_classes=2)
        report = load_pretrained_weights(model, {"model": sd})
        assert sorted(report["missing"]) == HEAD_AND_NORM and report["unexpected"] == []
        assert torch.equal(model.stages[2][5].grn.beta, encoder["stages.2.5.grn.beta"])


def test_dense_checkpoint_round_trips_unchanged():
    torch.manual_seed(0)
    model = convnextv2.convnextv2_atto(num_classes=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".grn." in name:
                p.normal_()
    sd = model.state_dict()
    remapped = remap_checkpoint_keys(sd)
    assert list(remapped) == list(sd)
    for key in sd:
        assert remapped[key].shape == sd[key].shape and torch.equal(remapped[key], sd[key]), key
    fresh = convnextv2.convnextv2_atto(num_classes=3)
    report = load_pretrained_weights(fresh, {"model": sd, "model_ema": sd, "class_names": ["a", "b", "c"]})
    assert report == dict(missing=[], unexpected=[], mismatched=[])
    assert torch.equal(fresh.stages[1][1].grn.gamma, sd["stages.1.1.grn.gamma"])
    # a bare state_dict works as well
    assert load_pretrained_weights(convnextv2.convnextv2_atto(num_classes=3), sd)["missing"] == []


def test_head_of_other_size_is_skipped():
    source = convnextv2.convnextv2_atto(num_classes=1000)
    model = convnextv2.convnextv2_atto(num_classes=2)
    head_before = model.head.weight.clone()
    report = load_pretrained_weights(model, {"model": source.state_dict()})
    assert sorted(report["mismatched"]) == ["head.bias", "head.weight"]
    assert sorted(report["missing"]) == ["head.bias", "head.weight"]
    assert torch.equal(model.head.weight, head_before)
    assert torch.equal(model.norm.weight, source.norm.weight)


def test_model_prefix():
    source = convnextv2.convnextv2_atto(num_classes=2)
    sd = {"backbone." + k: v for k, v in source.state_dict().items()}
    sd["other.weight"] = torch.zeros(3)
    model = convnextv2.convnextv2_atto(num_classes=2)
    report = load_pretrained_weights(model, {"model": sd}, model_prefix="backbone.")
    assert report["missing"] == [] and report["unexpected"] == ["other.weight"]
    assert torch.equal(model.stages[3][1].pwconv2.weight, source.stages[3][1].pwconv2.weight)


def test_other_architecture_is_an_error():
    with torch.device("meta"):
        tiny = fcmae.convnextv2_tiny(decoder_embed_dim=64)
    sd = {k: torch.zeros(v.shape) for k, v in tiny.state_dict().items()}
    model = convnextv2.convnextv2_atto(num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=r"downsample_layers\.0\.0\.weight.*\(96, 3, 4, 4\).*\(40, 3, 4, 4\)"):
        load_pretrained_weights(model, {"model": sd})
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing half-loaded


def test_unrelated_or_malformed_checkpoint_is_an_error():
    model = convnextv2.convnextv2_atto(num_classes=2)
    with pytest.raises(UserError, match="no weight"):
        load_pretrained_weights(model, {"model": {"fc.weight": torch.zeros(2, 3), "head.bias": torch.zeros(2)}})
    with pytest.raises(UserError, match="'model'"):
        load_pretrained_weights(model, {"epoch": 3, "args": {}})
    with pytest.raises(UserError, match="kernel"):
        remap_checkpoint_keys({"encoder.stages.0.0.dwconv.kernel": torch.zeros(48, 4)})
