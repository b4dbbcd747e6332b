import argparse

import pytest
import torch

import models.convnextv2 as convnextv2
import optim_factory
from optim_factory import (LayerDecayValueAssigner, create_optimizer, get_num_layer_for_convnext,
                           get_num_layer_for_convnext_single, get_parameter_groups)
from rheed.errors import UserError


def opt_args(**kw):
    base = dict(opt='adamw', lr=1e-3, weight_decay=0.05, opt_eps=1e-8, opt_betas=None, momentum=0.9)
    base.update(kw)
    return argparse.Namespace(**base)


def layer_decay_optimizer(model, layer_decay, layer_decay_type):
    num_layers = 12 if layer_decay_type == 'group' else sum(model.depths)
    values = [layer_decay ** (num_layers + 1 - i) for i in range(num_layers + 2)]
    assigner = LayerDecayValueAssigner(values, depths=model.depths, layer_decay_type=layer_decay_type)
    return create_optimizer(opt_args(), model, get_num_layer=assigner.get_layer_id,
                            get_layer_scale=assigner.get_scale), values


@pytest.fixture(scope="module")
def base_model():
    return convnextv2.convnextv2_base()


def test_single_layer_ids():
    depths = [3, 3, 27, 3]
    assert get_num_layer_for_convnext_single('downsample_layers.0.0.weight', depths) == 1
    assert get_num_layer_for_convnext_single('stages.0.0.dwconv.weight', depths) == 1
    assert get_num_layer_for_convnext_single('stages.0.2.grn.gamma', depths) == 3
    assert get_num_layer_for_convnext_single('downsample_layers.2.1.weight', depths) == 7
    assert get_num_layer_for_convnext_single('stages.2.0.pwconv1.weight', depths) == 7
    assert get_num_layer_for_convnext_single('stages.3.2.pwconv2.bias', depths) == 36
    assert get_num_layer_for_convnext_single('norm.weight', depths) == 37
    assert get_num_layer_for_convnext_single('head.weight', depths) == 37


def test_group_layer_ids():
    assert get_num_layer_for_convnext('downsample_layers.0.0.weight') == 0
    assert get_num_layer_for_convnext('stages.0.1.dwconv.weight') == 1
    assert get_num_layer_for_convnext('downsample_layers.1.1.weight') == 2
    assert get_num_layer_for_convnext('stages.1.2.dwconv.weight') == 2
    assert get_num_layer_for_convnext('downsample_layers.2.1.weight') == 3
    assert get_num_layer_for_convnext('stages.2.0.dwconv.weight') == 3
    assert get_num_layer_for_convnext('stages.2.26.dwconv.weight') == 11
    assert get_num_layer_for_convnext('downsample_layers.3.1.weight') == 12
    assert get_num_layer_for_convnext('stages.3.0.dwconv.weight') == 12
    assert get_num_layer_for_convnext('head.bias') == 13


def test_base_single_layer_decay_groups(base_model):
    optimizer, values = layer_decay_optimizer(base_model, 0.9, 'single')
    assert len(values) == 38 and values[-1] == 1.0
    assert len(optimizer.param_groups) == 74
    # first group is the stem's (layer 1) decay group
    assert optimizer.param_groups[0]['lr_scale'] == pytest.approx(0.9 ** 36)
    assert 0.9 ** 36 == pytest.approx(0.0225, abs=1e-4)
    assert max(g['lr_scale'] for g in optimizer.param_groups) == 1.0
    assert all(g['weight_decay'] in (0.0, 0.05) for g in optimizer.param_groups)


def test_base_group_layer_decay_groups(base_model):
    optimizer, values = layer_decay_optimizer(base_model, 0.9, 'group')
    assert len(values) == 14
    assert len(optimizer.param_groups) == 28
    assert optimizer.param_groups[0]['lr_scale'] == pytest.approx(0.9 ** 13)  # stem, layer 0


def test_no_decay_rule_includes_grn():
    model = convnextv2.convnextv2_atto()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = get_parameter_groups(model, weight_decay=0.3)
    decay = {names[id(p)] for g in groups if g['weight_decay'] > 0 for p in g['params']}
    no_decay = {names[id(p)] for g in groups if g['weight_decay'] == 0 for p in g['params']}
    assert 'stages.0.0.grn.gamma' in no_decay and 'stages.0.0.grn.beta' in no_decay
    assert model.get_parameter('stages.0.0.grn.gamma').ndim == 4  # excluded by name, not by shape
    assert {'stages.1.0.dwconv.bias', 'norm.weight', 'stages.0.0.norm.weight', 'head.bias'} <= no_decay
    assert {'stages.1.0.dwconv.weight', 'stages.1.0.pwconv1.weight', 'downsample_layers.0.0.weight',
            'head.weight'} <= decay
    assert len(decay) + len(no_decay) == len(names)
    assert all(g['lr_scale'] == 1.0 for g in groups)


def test_frozen_parameters_skipped():
    model = convnextv2.convnextv2_atto()
    model.head.weight.requires_grad_(False)
    groups = get_parameter_groups(model, weight_decay=0.1)
    assert all(p is not model.head.weight for g in groups for p in g['params'])


@pytest.mark.filterwarnings('ignore:This overload of add')  # timm 0.3.2 Nadam/AdamP use an old torch overload
@pytest.mark.parametrize('name', ['sgd', 'momentum', 'adamw', 'adam', 'nadam', 'radam', 'adamp', 'rmsproptf',
                                  'lookahead_adamw'])
def test_optimizers_step(name):
    model = torch.nn.Linear(4, 2)
    optimizer = create_optimizer(opt_args(opt=name), model)
    before = model.weight.detach().clone()
    model(torch.randn(3, 4)).pow(2).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight)


def test_adamw_betas_and_weight_decay_in_groups():
    model = torch.nn.Linear(4, 2)
    optimizer = create_optimizer(opt_args(opt='AdamW', opt_betas=[0.9, 0.95]), model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g['weight_decay'] for g in optimizer.param_groups] == [0.05, 0.0]
    assert optimizer.param_groups[0]['betas'] == (0.9, 0.95)


@pytest.mark.parametrize('name', ['lamb2', 'adamw_lookahead', 'lookahead', 'foo_adamw'])
def test_unknown_optimizer(name):
    with pytest.raises(UserError, match='unknown optimizer'):
        create_optimizer(opt_args(opt=name), torch.nn.Linear(2, 2))


def test_apex_optimizer_refused():
    with pytest.raises(UserError, match='apex'):
        create_optimizer(opt_args(opt='fusedlamb'), torch.nn.Linear(2, 2))
    assert 'fusedadam' in optim_factory.APEX_OPTIMIZER_NAMES


def test_layer_decay_kept_without_weight_decay():
    model = convnextv2.convnextv2_atto()
    num_layers = sum(model.depths)
    values = [0.5 ** (num_layers + 1 - i) for i in range(num_layers + 2)]
    assigner = LayerDecayValueAssigner(values, depths=model.depths, layer_decay_type='single')
    optimizer = create_optimizer(opt_args(weight_decay=0.0), model, get_num_layer=assigner.get_layer_id,
                                 get_layer_scale=assigner.get_scale)
    scales = {g['lr_scale'] for g in optimizer.param_groups}
    assert len(scales) == num_layers + 1 and set(scales) <= set(values)
    assert min(scales) < 1e-3 and max(scales) == 1.0  # stem far below the head
    assert all(g['weight_decay'] == 0.0 for g in optimizer.param_groups)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_makes_the_same_updates(name):
    models_out = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = convnextv2.convnextv2_atto(num_classes=2)
        optimizer = create_optimizer(opt_args(opt=name, fused_optimizer=fused), model)
        assert all(g.get("fused") == (True if fused else None) for g in optimizer.param_groups)
        for step in range(3):
            x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(step))
            optimizer.zero_grad()
            model(x).logsumexp(dim=1).mean().backward()
            optimizer.step()
        models_out.append(model.state_dict())
    plain, fused = models_out
    for key in plain:
        torch.testing.assert_close(fused[key], plain[key], rtol=1e-5, atol=1e-6)


def test_fused_optimizer_refused_for_sgd():
    with pytest.raises(UserError, match="--fused_optimizer true works with --opt adam or adamw"):
        create_optimizer(opt_args(opt="sgd", fused_optimizer=True), torch.nn.Linear(2, 2))
