"""``CompileModulesHook``: its checks, and what it compiles when (end to end in
tests/test_models/test_segmentors/test_madm_training.py)."""
import sys
from types import SimpleNamespace

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import HOOKS, MODELS
from torch import nn

from _helpers import REPO_ROOT
from madm.engine.hooks import CompileModulesHook
from madm.engine.hooks.compile_modules_hook import (DEFAULT_MODULES, UNET_MODULES,
                                                   summarize_names)

sys.path.insert(0, f'{REPO_ROOT}/tools')
import train as train_tool  # noqa: E402

TINY_MADM = f'{REPO_ROOT}/tests/data/configs/tiny_madm.py'


@pytest.mark.parametrize('mode', ['reduce-overhead', 'max-autotune', 'fastest'])
def test_modes_are_checked_when_the_hook_is_built(mode):
    with pytest.raises(ValueError, match='CUDA graphs|Unknown compile mode'):
        HOOKS.build(dict(type='CompileModulesHook', mode=mode))


@pytest.mark.parametrize('modules', [[], 'backbone.unet'])
def test_modules_must_be_a_list_of_names(modules):
    with pytest.raises(ValueError, match='non-empty list'):
        CompileModulesHook(modules=modules)


@pytest.mark.parametrize('teacher_scope', ['head_neck_prompt', 'full'])
@pytest.mark.parametrize('whole_unet', [False, True])
def test_default_and_whole_unet_modules_of_madm(teacher_scope, whole_unet):
    """By default the UNet's blocks, both decode heads and the VAE's two halves (the teacher's
    own UNet and VAE too when it has a backbone of its own); the UNet as one graph when
    asked, which then covers its blocks."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY_MADM)
    model = MODELS.build(dict(cfg.model, teacher_scope=teacher_scope))
    modules = [*UNET_MODULES, *DEFAULT_MODULES] if whole_unet else None
    hook = CompileModulesHook(modules=modules, backend='eager')
    hook.before_train(SimpleNamespace(model=model))
    compiled = {name for name, module in model.named_modules()
                if module._compiled_call_impl is not None}
    backbones = ['backbone'] + (['teacher.backbone'] if teacher_scope == 'full' else [])
    expected = {'decode_head', 'teacher.decode_head'}
    for backbone in backbones:
        expected |= {f'{backbone}.vae.encoder', f'{backbone}.vae.decoder'}
        unet = model.get_submodule(f'{backbone}.unet')
        if whole_unet:
            expected.add(f'{backbone}.unet')
        else:
            expected |= {f'{backbone}.unet.{name}' for name, module in unet.named_modules()
                         if type(module).__name__ in ('ResnetBlock2D', 'Transformer2DModel',
                                                      'Downsample2D', 'Upsample2D')}
    assert compiled == expected


def test_the_log_line_counts_what_a_pattern_matched():
    names = ['backbone.unet.down_blocks.0.resnets.0', 'backbone.unet.up_blocks.1.resnets.2',
             'backbone.unet.up_blocks.1.attentions.2', 'decode_head', 'teacher.decode_head',
             'backbone.vae.encoder', 'extra']
    assert summarize_names(names, DEFAULT_MODULES) == (
        '*backbone.unet.*.resnets.* (2), backbone.unet.up_blocks.1.attentions.2, '
        '*decode_head (2), backbone.vae.encoder, extra')


def test_compiles_the_wrapped_model_once_across_train_val_and_test():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    hook = CompileModulesHook(modules=['0'], backend='eager')
    runner = SimpleNamespace(model=nn.DataParallel(model))  # a registered model wrapper
    hook.before_train(runner)
    compiled_call = model[0]._compiled_call_impl
    assert compiled_call is not None and model[1]._compiled_call_impl is None
    hook.before_val(runner)
    hook.before_test(runner)
    assert model[0]._compiled_call_impl is compiled_call


def test_train_compile_flag_adds_the_hook_once(monkeypatch, tmp_path):
    monkeypatch.setenv('LOCAL_RANK', '0')
    cfg = train_tool.build_config(train_tool.parse_args([TINY_MADM, '--compile']))
    types = [hook['type'] for hook in cfg.custom_hooks]
    assert types.count('CompileModulesHook') == 1
    assert types[:-1] == [hook['type'] for hook in Config.fromfile(TINY_MADM).custom_hooks]
    plain = train_tool.build_config(train_tool.parse_args([TINY_MADM]))
    assert 'CompileModulesHook' not in [hook['type'] for hook in plain.custom_hooks]
    # A config that has the hook keeps its own settings.
    own = tmp_path / 'own_compile.py'
    own.write_text(f"_base_ = ['{TINY_MADM}']\n"
                   "custom_hooks = [dict(type='CompileModulesHook', backend='aot_eager')]\n")
    again = train_tool.build_config(train_tool.parse_args([str(own), '--compile']))
    assert again.custom_hooks == [dict(type='CompileModulesHook', backend='aot_eager')]


def test_defaults_compile_what_a_model_without_a_vae_has_and_named_modules_must_exist():
    """``--compile`` on any mmseg segmentor compiles its decode head; a module named in the
    config that the model lacks is an error that names the model's modules."""
    model = nn.Module()
    model.backbone, model.decode_head = nn.Linear(2, 2), nn.Linear(2, 2)
    CompileModulesHook(backend='eager').before_train(SimpleNamespace(model=model))
    assert model.decode_head._compiled_call_impl is not None
    assert model.backbone._compiled_call_impl is None
    with pytest.raises(ValueError, match=r"named '\*backbone.unet.\*.resnets.\*'.*backbone, "
                                         'decode_head'):
        CompileModulesHook(modules=DEFAULT_MODULES, backend='eager').before_train(
            SimpleNamespace(model=model))
    with pytest.raises(ValueError, match=r"named '\*backbone.unet.*' or .*'\*decode_head' or"):
        CompileModulesHook(backend='eager').before_train(SimpleNamespace(model=nn.Linear(2, 2)))
