"""``find_submodules`` and ``compile_submodules``: names, patterns, in-place compilation."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from torch import nn

from _helpers import REPO_ROOT
from madm.utils.compile_modules import (RECOMPILE_LIMIT, UNET_BLOCK_MODULES,
                                        compile_submodules, find_submodules)


class _Head(nn.Module):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, channels, 1)
        self.norm = nn.GroupNorm(1, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)).relu()


class _Model(nn.Module):
    """A student head and a teacher holding its copy, as the UDA segmentors nest them."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.decode_head = _Head()
        self.teacher = nn.ModuleDict({'decode_head': _Head()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        return self.decode_head(feats) + self.teacher['decode_head'](feats)


def test_names_and_patterns_match_outermost_modules_in_order():
    model = _Model()
    found = find_submodules(model, ['*decode_head', 'backbone'])
    assert [name for name, _ in found] == ['decode_head', 'teacher.decode_head', 'backbone']
    assert found[1][1] is model.teacher['decode_head']
    # A module inside another match is covered by compiling the outer one.
    assert [n for n, _ in find_submodules(model, ['decode_head.conv', 'decode_head'])] == [
        'decode_head']
    # A module matched by two patterns is listed once.
    assert [n for n, _ in find_submodules(model, ['*head', 'decode_head'])] == [
        'decode_head', 'teacher.decode_head']


def test_a_name_that_matches_nothing_names_the_top_level_modules():
    with pytest.raises(ValueError, match=r"named 'unet'.*backbone, decode_head, teacher"):
        find_submodules(_Model(), ['decode_head', 'unet'])
    for patterns in ([], 'decode_head'):
        with pytest.raises(ValueError, match='non-empty list'):
            find_submodules(_Model(), patterns)


def test_compiles_in_place_with_the_same_keys_outputs_and_gradients():
    torch.manual_seed(0)
    model, x = _Model(), torch.randn(2, 3, 8, 8)
    keys = list(model.state_dict())
    children = dict(model.named_modules())
    expected = model(x)
    expected.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    torch._dynamo.reset()
    try:
        assert compile_submodules(model, ['*decode_head'], backend='aot_eager') == [
            'decode_head', 'teacher.decode_head']
        # No `_orig_mod.` prefix: checkpoints load into an eager model and back.
        assert list(model.state_dict()) == keys
        assert all(module is children[name] for name, module in model.named_modules())
        out = model(x)
        out.square().sum().backward()
        torch.testing.assert_close(out, expected)
        for grad, eager in zip((p.grad for p in model.parameters()), eager_grads):
            torch.testing.assert_close(grad, eager)
        # Compiled already: a second call (a hook's before_val after before_train) keeps
        # the compiled graphs instead of starting over.
        compiled_call = model.decode_head._compiled_call_impl
        assert compile_submodules(model, ['*decode_head', 'backbone'],
                                  backend='aot_eager') == ['backbone']
        assert model.decode_head._compiled_call_impl is compiled_call
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize('mode', ['reduce-overhead', 'max-autotune'])
def test_cuda_graph_modes_only_when_the_caller_allows_them(mode):
    model = _Model()
    with pytest.raises(ValueError, match='CUDA graphs.*twice before its backward'):
        compile_submodules(model, ['decode_head'], mode=mode)
    assert model.decode_head._compiled_call_impl is None
    # Compilation is lazy: nothing is recorded until the first call, which needs CUDA.
    assert compile_submodules(model, ['decode_head'], mode=mode,
                              allow_cuda_graphs=True) == ['decode_head']


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="Unknown compile mode 'fast'"):
        compile_submodules(_Model(), ['decode_head'], mode='fast')


@pytest.mark.parametrize('teacher_scope', ['head_neck_prompt', 'full'])
def test_unet_blocks_are_every_block_and_each_tap_ends_one(teacher_scope):
    """The block patterns find every ResNet block, transformer and resampler of the UNet (the
    teacher's too when it has its own) and nothing else, and every feature tap is one of them:
    a tap is then a compiled graph's output, never an intermediate (inductor's fault)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(f'{REPO_ROOT}/tests/data/configs/tiny_madm.py')
    model = MODELS.build(dict(cfg.model, teacher_scope=teacher_scope))
    found = dict(find_submodules(model, UNET_BLOCK_MODULES))
    block_types = ('ResnetBlock2D', 'Transformer2DModel', 'Downsample2D', 'Upsample2D')
    prefixes = ['backbone.unet.'] + (['teacher.backbone.unet.']
                                     if teacher_scope == 'full' else [])
    expected = {name for name, module in model.named_modules()
                if type(module).__name__ in block_types and name.startswith(tuple(prefixes))}
    assert set(found) == expected and len(expected) == 44 * len(prefixes)
    for tap in model.backbone.tap_names:
        assert f'backbone.unet.{tap}' in found


@pytest.mark.parametrize('limit', [RECOMPILE_LIMIT, None])
def test_blocks_of_one_class_compile_past_dynamos_default_limit(limit):
    """Blocks of one class share their code, compiled once per shape (static shapes): past
    dynamo's default limit of 8 the rest would run eagerly, with only a warning (made an
    error here). The limit is the compiled modules' own; the global setting stays."""
    from torch._dynamo import config as dynamo_config
    blocks = nn.ModuleList(_Head(c) for c in range(1, 13))  # one forward, 12 shapes
    torch._dynamo.reset()
    try:
        with dynamo_config.patch(recompile_limit=8, fail_on_recompile_limit_hit=True):
            compile_submodules(blocks, ['?', '??'], backend='eager', recompile_limit=limit)
            ran = 0
            try:
                for block in blocks:
                    block(torch.randn(1, 4, 2, 2))
                    ran += 1
            except Exception as e:  # dynamo's FailOnRecompileLimitHit
                assert 'recompile' in str(e).lower() or 'limit' in str(e).lower(), e
            assert dynamo_config.recompile_limit == 8
        assert ran == (12 if limit else 8)
    finally:
        torch._dynamo.reset()
