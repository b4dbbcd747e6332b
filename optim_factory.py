"""Optimizers for fine-tuning: parameter groups with weight-decay rules and layer-wise lr decay."""
import json

from torch import optim as optim

import timm_compat  # noqa: F401  (must precede any timm import)
from timm.optim.adafactor import Adafactor
from timm.optim.adahessian import Adahessian
from timm.optim.adamp import AdamP
from timm.optim.lookahead import Lookahead
from timm.optim.nadam import Nadam
from timm.optim.novograd import NovoGrad
from timm.optim.nvnovograd import NvNovoGrad
from timm.optim.radam import RAdam
from timm.optim.rmsprop_tf import RMSpropTF
from timm.optim.sgdp import SGDP

from rheed.errors import UserError

OPTIMIZER_NAMES = ('sgd', 'nesterov', 'momentum', 'adam', 'adamw', 'nadam', 'radam', 'adamp', 'sgdp',
                   'adadelta', 'adafactor', 'adahessian', 'rmsprop', 'rmsproptf', 'novograd', 'nvnovograd')
APEX_OPTIMIZER_NAMES = ('fusedsgd', 'fusedmomentum', 'fusedadam', 'fusedadamw', 'fusedlamb', 'fusednovograd')


def get_num_layer_for_convnext_single(var_name, depths):
    """Layer id with one id per block: stem/downsample s share the id of stages.s.0; head gets sum+1."""
    if var_name.startswith("downsample_layers"):
        stage_id = int(var_name.split('.')[1])
        return sum(depths[:stage_id]) + 1
    if var_name.startswith("stages"):
        stage_id = int(var_name.split('.')[1])
        block_id = int(var_name.split('.')[2])
        return sum(depths[:stage_id]) + block_id + 1
    return sum(depths) + 1


def get_num_layer_for_convnext(var_name):
    """Layer id in 12 groups, laid out for depths [3, 3, 27, 3] (stage 2 in groups of 3 blocks).

    The same ids are used for every model size, as upstream does.
    """
    num_max_layer = 12
    if var_name.startswith("downsample_layers"):
        stage_id = int(var_name.split('.')[1])
        return {0: 0, 1: 2, 2: 3, 3: num_max_layer}[stage_id]
    if var_name.startswith("stages"):
        stage_id = int(var_name.split('.')[1])
        block_id = int(var_name.split('.')[2])
        if stage_id in (0, 1):
            return stage_id + 1
        if stage_id == 2:
            return 3 + block_id // 3
        return num_max_layer
    return num_max_layer + 1


class LayerDecayValueAssigner:
    def __init__(self, values, depths=(3, 3, 27, 3), layer_decay_type='single'):
        self.values = values
        self.depths = list(depths)
        self.layer_decay_type = layer_decay_type

    def get_scale(self, layer_id):
        return self.values[layer_id]

    def get_layer_id(self, var_name):
        if self.layer_decay_type == 'single':
            return get_num_layer_for_convnext_single(var_name, self.depths)
        return get_num_layer_for_convnext(var_name)


def get_parameter_groups(model, weight_decay=1e-5, skip_list=(), get_num_layer=None, get_layer_scale=None):
    """Groups trainable parameters by (layer id, decay / no decay).

    No weight decay for 1-D tensors, biases, names in skip_list and names ending in .gamma/.beta
    (GRN). Each group carries `lr_scale` (1.0 without layer decay).
    """
    parameter_group_names = {}
    parameter_group_vars = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = (param.ndim == 1 or name.endswith(".bias") or name in skip_list
                    or name.endswith(".gamma") or name.endswith(".beta"))
        group_name, this_weight_decay = ("no_decay", 0.) if no_decay else ("decay", weight_decay)
        if get_num_layer is not None:
            layer_id = get_num_layer(name)
            group_name = f"layer_{layer_id}_{group_name}"
        else:
            layer_id = None

        if group_name not in parameter_group_names:
            scale = get_layer_scale(layer_id) if get_layer_scale is not None else 1.
            parameter_group_names[group_name] = {"weight_decay": this_weight_decay, "params": [], "lr_scale": scale}
            parameter_group_vars[group_name] = {"weight_decay": this_weight_decay, "params": [], "lr_scale": scale}
        parameter_group_vars[group_name]["params"].append(param)
        parameter_group_names[group_name]["params"].append(name)
    print(f"Param groups = {json.dumps(parameter_group_names, indent=2)}")
    return list(parameter_group_vars.values())


def create_optimizer(args, model, get_num_layer=None, get_layer_scale=None, filter_bias_and_bn=True,
                     skip_list=None):
    """Builds the optimizer named by args.opt (optionally `lookahead_<name>`) over parameter groups."""
    opt_lower = args.opt.lower()
    opt_split = opt_lower.split('_')
    name = opt_split[-1]
    lookahead = len(opt_split) > 1
    if (len(opt_split) > 2 or (lookahead and opt_split[0] != 'lookahead')
            or name not in OPTIMIZER_NAMES + APEX_OPTIMIZER_NAMES):
        raise UserError(f"unknown optimizer --opt {args.opt!r}; choose one of {', '.join(OPTIMIZER_NAMES)} "
                        f"(optionally prefixed with lookahead_)")
    if name in APEX_OPTIMIZER_NAMES:
        raise UserError(f"--opt {args.opt}: NVIDIA apex fused optimizers are not supported; use "
                        f"{name.replace('fused', '')} instead (e.g. adamw)")

    weight_decay = args.weight_decay
    # groups also without weight decay: layer-wise lr decay lives in their lr_scale
    if filter_bias_and_bn and (weight_decay or get_num_layer is not None):
        skip = {}
        if skip_list is not None:
            skip = skip_list
        elif hasattr(model, 'no_weight_decay'):
            skip = model.no_weight_decay()
        parameters = get_parameter_groups(model, weight_decay, skip, get_num_layer, get_layer_scale)
        weight_decay = 0.
    else:
        parameters = model.parameters()

    opt_args = dict(lr=args.lr, weight_decay=weight_decay)
    if getattr(args, 'opt_eps', None) is not None:
        opt_args['eps'] = args.opt_eps
    if getattr(args, 'opt_betas', None) is not None:
        opt_args['betas'] = args.opt_betas
    momentum = getattr(args, 'momentum', 0.9)
    if getattr(args, 'fused_optimizer', False):
        if name not in ('adam', 'adamw'):
            raise UserError(f"--fused_optimizer true works with --opt adam or adamw, not {args.opt}")
        opt_args['fused'] = True

    try:
        if name in ('sgd', 'nesterov'):
            opt_args.pop('eps', None)
            optimizer = optim.SGD(parameters, momentum=momentum, nesterov=True, **opt_args)
        elif name == 'momentum':
            opt_args.pop('eps', None)
            optimizer = optim.SGD(parameters, momentum=momentum, nesterov=False, **opt_args)
        elif name == 'adam':
            optimizer = optim.Adam(parameters, **opt_args)
        elif name == 'adamw':
            optimizer = optim.AdamW(parameters, **opt_args)
        elif name == 'nadam':
            optimizer = Nadam(parameters, **opt_args)
        elif name == 'radam':
            optimizer = RAdam(parameters, **opt_args)
        elif name == 'adamp':
            optimizer = AdamP(parameters, wd_ratio=0.01, nesterov=True, **opt_args)
        elif name == 'sgdp':
            optimizer = SGDP(parameters, momentum=momentum, nesterov=True, **opt_args)
        elif name == 'adadelta':
            optimizer = optim.Adadelta(parameters, **opt_args)
        elif name == 'adafactor':
            if not args.lr:
                opt_args['lr'] = None
            optimizer = Adafactor(parameters, **opt_args)
        elif name == 'adahessian':
            optimizer = Adahessian(parameters, **opt_args)
        elif name == 'rmsprop':
            optimizer = optim.RMSprop(parameters, alpha=0.9, momentum=momentum, **opt_args)
        elif name == 'rmsproptf':
            optimizer = RMSpropTF(parameters, alpha=0.9, momentum=momentum, **opt_args)
        elif name == 'novograd':
            optimizer = NovoGrad(parameters, **opt_args)
        else:  # nvnovograd
            optimizer = NvNovoGrad(parameters, **opt_args)
    except TypeError as e:
        raise UserError(f"--opt {name} does not accept these settings ({e})") from None

    if lookahead:
        optimizer = Lookahead(optimizer)
    return optimizer
