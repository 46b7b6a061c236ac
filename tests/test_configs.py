"""Every task config parses, builds, and carries the reference settings (method.md §4-§8).

Models are built with the tiny SD preset in place of the SD-1.4 folder (everything else as
configured), once per config. The expected values are typed in from method.md, not read
from the configs' bases.
"""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

from _helpers import REPO_ROOT
from madm.datasets.class_maps import TASK_CLASSES
from madm.utils import MissingDataError

CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'madm')
TASKS = ('depth', 'infrared', 'event')
VARIANTS = ('', '_no-dplg', '_no-lplr', '_source-only')
ALL_CONFIGS = [f'rgb2{task}{variant}.py' for task in TASKS for variant in VARIANTS]
# Reference settings plus memory levers (rgb2event's values are checked in
# tests/test_tools/test_benchmark.py against what the benchmark measured; depth and infrared
# set the same).
MEMORY_CONFIGS = ['rgb2depth_1gpu-24gb.py', 'rgb2event_1gpu-24gb.py',
                  'rgb2infrared_1gpu-24gb.py']

# method.md §4 (DPLG) and §5.2 (LPLR) tables.
DPLG = {'depth': ((60, 61), 5000), 'infrared': ((50, 51), 8000), 'event': ((50, 51), 8000)}
LPLR = {'depth': (1.0, 1.0), 'infrared': (1.0, 1.0), 'event': (20.0, 0.0)}
TINY_BACKBONE = dict(type='StableDiffusionBackbone', preset='tiny')
TINY_NECK_IN = [3, 32, 64, 64]


def _load(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def _task(name: str) -> str:
    return name[len('rgb2'):].split('_')[0].removesuffix('.py')


def _build_tiny(cfg: Config) -> torch.nn.Module:
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone = dict(TINY_BACKBONE)
    model_cfg.neck.in_channels = list(TINY_NECK_IN)
    init_default_scope('mmseg')
    return MODELS.build(model_cfg)


def _diff(a, b, prefix: str = '') -> set[str]:
    """Dotted keys where two plain config dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = set()
        for key in set(a) | set(b):
            out |= _diff(a.get(key, '<missing>'), b.get(key, '<missing>'), f'{prefix}{key}.')
        return out
    return set() if a == b else {prefix.rstrip('.')}


@pytest.fixture(scope='module', autouse=True)
def default_paths():
    """Parse the configs with the paths' defaults, whatever the caller's environment says."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv('MADM_DATA_ROOT', raising=False)
        mp.delenv('MADM_SD_PATH', raising=False)
        yield


@pytest.fixture(scope='module')
def built(default_paths):
    """{config name: (config, model built with the tiny backbone)}, built lazily, once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cfg = _load(name)
            cache[name] = (cfg, _build_tiny(cfg))
        return cache[name]

    return get


def test_every_config_is_covered():
    # The CPU demo configs (demo_*.py, tiny SD architecture) are built by test_demo_configs_build.
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*.py'))
                   if not osp.basename(p).startswith('demo_'))
    assert found == sorted(ALL_CONFIGS + MEMORY_CONFIGS)


@pytest.mark.parametrize('name', MEMORY_CONFIGS)
def test_memory_configs_build_and_keep_the_task(built, name):
    cfg, model = built(name)
    reference, _ = built(name.split('_')[0] + '.py')
    assert type(model).__name__ == 'MADM' and model.decode_head.fusion_stride == 4
    # Only the backbone's speed switches, the head's fusion and resize, and the optimiser differ.
    assert _diff(cfg.model.to_dict(), reference.model.to_dict()) == {
        'backbone.gradient_checkpointing', 'backbone.vae_dtype', 'decode_head.fusion_stride',
        'decode_head.in_strides', 'decode_head.resize_impl'}
    assert model.decode_head.resize_impl == 'matmul'
    assert _diff(cfg.train_dataloader.to_dict(), reference.train_dataloader.to_dict()) == set()
    assert cfg.optim_wrapper.constructor == 'MergedParamGroupsOptimWrapperConstructor'
    assert 'constructor' not in reference.optim_wrapper


@pytest.mark.parametrize('name', sorted(
    osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, 'demo_*.py'))))
def test_demo_configs_build(name):
    cfg = _load(name)
    init_default_scope('mmseg')
    if not name.startswith('demo_rgb2infrared'):
        # the event and depth demos' pretrained tiny SD (tools/demo.py writes it): the tiny layout
        assert cfg.model.backbone.pretrained.endswith('/tiny-sd')
        cfg.model.backbone = dict(cfg.model.backbone, pretrained=None, preset='tiny')
    else:
        assert cfg.model.backbone.preset == 'tiny'
    model = MODELS.build(cfg.model)
    assert model.decode_head.num_classes == len(TASK_CLASSES[_task(name.removeprefix('demo_'))].classes)


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_builds_with_tiny_backbone(built, name):
    cfg, model = built(name)
    task = _task(name)
    classes = TASK_CLASSES[task]
    expected_type = 'EncoderDecoder' if 'source-only' in name else 'MADM'
    assert type(model).__name__ == expected_type
    assert cfg.default_scope == 'mmseg' and cfg.custom_imports.imports == ['madm']
    assert model.decode_head.num_classes == len(classes.classes) == (9 if task == 'infrared'
                                                                      else 11)
    # The test set's dataset declares the same class set.
    dataset_cls = DATASETS.get(cfg.test_dataloader.dataset.type)
    assert tuple(dataset_cls.METAINFO['classes']) == classes.classes
    # The SD path and data roots come from the environment variables' defaults.
    assert cfg.sd_path == 'checkpoints/stable-diffusion-v1-4'
    assert cfg.data_root == 'data'


@pytest.mark.parametrize('task', TASKS)
def test_madm_task_settings_match_method_md(built, task):
    cfg, model = built(f'rgb2{task}.py')
    classes = TASK_CLASSES[task]
    assert cfg.model.palette == [list(c) for c in classes.palette]
    assert model.palette.tolist() == [list(map(float, c)) for c in classes.palette]
    (low, high), end_iter = DPLG[task]
    assert model.dplg_cfg == dict(low=low, high=high, end_iter=end_iter)
    source_weight, mixed_weight = LPLR[task]
    assert model.lplr_cfg == dict(source_weight=source_weight, mixed_weight=mixed_weight)
    assert cfg.model.lplr.loss == dict(type='LatentRegressionLoss', loss_type='l1',
                                       normalize='all')
    # EMA keep-rate and pseudo-label threshold (method.md §7); teacher_mode is the one
    # documented deviation (eval instead of the reference's train mode, method.md §11.2).
    assert (model.teacher_alpha, model.pseudo_threshold) == (0.999, 0.968)
    assert model.teacher_mode == 'eval' and model.teacher_scope == 'head_neck_prompt'
    assert model.class_mix_cfg == dict(scope='batch', include_ignore=True, on_device=False)
    assert cfg.model.strong_aug == dict(jitter_prob=0.8, blur_prob=0.5)
    # Reference backbone: SD-1.4 taps 5/8/11 with the seed-42 noise, fully fine-tuned.
    assert cfg.model.backbone == dict(type='StableDiffusionBackbone', pretrained=cfg.sd_path,
                                      tap_layers=(5, 8, 11), noise='fixed', trainable='full')
    assert cfg.model.neck.in_channels == [3, 320, 640, 1280]
    assert cfg.model.neck.out_channels == [128, 512, 512, 512]
    # Train crops and test resize (method.md §7, §8.4).
    assert cfg.crop_size == (512, 512)
    assert cfg.train_dataloader.batch_size == 2
    target_resize = {'depth': (712, 712), 'infrared': (683, 512), 'event': (768, 512)}[task]
    resize = [t for t in cfg.target_pipeline if t.type == 'Resize']
    assert [t.scale for t in resize] == [target_resize]
    assert [t.scale for t in cfg.source_pipeline if t.type == 'Resize'] == [(1024, 512)]
    assert cfg.test_pipeline == cfg.test_pipeline_reference
    assert [t for t in cfg.test_pipeline if t.type == 'ReferenceEvalResize'][0].scale == (512, 512)
    # PIL resizes everywhere, as the reference's dataset (method.md §7, §8.4).
    resizes = [t for pipeline in (cfg.source_pipeline, cfg.target_pipeline, cfg.test_pipeline,
                                  cfg.test_pipeline_native)
               for t in pipeline if t.type in ('Resize', 'ReferenceEvalResize')]
    # mmcv's Resize defaults to OpenCV, ReferenceEvalResize to PIL.
    assert len(resizes) == 4 and all(
        t.get('backend', 'cv2' if t.type == 'Resize' else 'pillow') == 'pillow' for t in resizes)
    rcs = cfg.train_dataloader.dataset.rare_class_sampling
    assert (rcs.class_temp, rcs.min_pixels, rcs.min_crop_pixels) == (0.01, 3000, 1500)


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_schedule_matches_method_md(name):
    cfg = _load(name)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper' and wrapper.dtype == 'float16'
    assert wrapper.optimizer == dict(type='AdamW', lr=5e-6, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.05)
    assert wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
    assert wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=10000, val_interval=1000)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 0.067, 27)
    assert (steps.type, steps.milestones, steps.gamma) == ('MultiStepLR', [8889, 9630], 0.1)
    assert cfg.default_hooks.checkpoint.interval == 1000
    assert cfg.randomness.seed == 42


@pytest.mark.parametrize('task', TASKS)
@pytest.mark.parametrize('variant, expected_diff', [
    ('_no-dplg', {'model.dplg'}),
    ('_no-lplr', {'model.lplr'}),
])
def test_ablation_changes_only_its_component(built, task, variant, expected_diff):
    parent = _load(f'rgb2{task}.py').to_dict()
    cfg = _load(f'rgb2{task}{variant}.py')
    assert _diff(cfg.to_dict(), parent) == expected_diff
    _, model = built(f'rgb2{task}{variant}.py')
    if variant == '_no-dplg':
        assert model.dplg_cfg is None and model.dplg_timestep(0) == 0
        assert model.lplr_cfg is not None
    else:
        assert model.lplr_cfg is None and model.dplg_cfg is not None
        # Without LPLR no loss term regresses the UNet output.
        assert model.extra_source_losses({'unet_output': None, 'decoded': None}, None) == {}


@pytest.mark.parametrize('task', TASKS)
def test_source_only_shares_everything_but_the_adaptation(task):
    parent = _load(f'rgb2{task}.py').to_dict()
    cfg = _load(f'rgb2{task}_source-only.py').to_dict()
    # Top level: only the model, the training data and MADM's own model variables differ.
    assert {k.split('.')[0] for k in _diff(cfg, parent)} == {
        'model', 'train_dataloader', 'palette', 'data_preprocessor'}
    for part in ('backbone', 'neck', 'decode_head', 'test_cfg'):
        assert cfg['model'][part] == parent['model'][part], part
    # Same preprocessing, without the source/target branches.
    pre, parent_pre = cfg['model']['data_preprocessor'], parent['model']['data_preprocessor']
    assert pre['type'] == 'SegDataPreProcessor'
    assert {k: v for k, v in pre.items() if k != 'type'} == {
        k: v for k, v in parent_pre.items() if k != 'type'}
    # Trained on the labelled source alone, exactly as MADM's source branch.
    assert cfg['train_dataloader']['dataset'] == parent['train_dataloader']['dataset']['source']
    # Batch size, sampler and workers are MADM's.
    assert all(k.startswith('dataset')
               for k in _diff(cfg['train_dataloader'], parent['train_dataloader']))


def test_madm_model_predicts_at_input_size(built):
    """The full-width neck and head run end to end on a tiny input (event task, 11 classes)."""
    _, model = built('rgb2event.py')
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 11, 64, 64)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('task, root_word', [('depth', 'DELIVER'), ('infrared', 'FMB'),
                                             ('event', 'DSEC')])
def test_missing_data_root_is_one_clear_error(tmp_path, monkeypatch, task, root_word):
    missing = str(tmp_path / 'no_data_here')
    monkeypatch.setenv('MADM_DATA_ROOT', missing)
    cfg = _load(f'rgb2{task}.py')
    assert cfg.data_root == missing
    init_default_scope('mmseg')
    with pytest.raises(MissingDataError) as err:
        DATASETS.build(cfg.test_dataloader.dataset)
    message = str(err.value)
    assert f'{root_word} root not found' in message and missing in message
    assert 'Download' in message  # says how to get it
    # The training set fails on its first dataset, the Cityscapes source.
    with pytest.raises(MissingDataError, match='Cityscapes root not found'):
        DATASETS.build(cfg.train_dataloader.dataset)


def test_missing_sd_folder_names_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv('MADM_SD_PATH', raising=False)
    monkeypatch.chdir(tmp_path)  # the default path is relative: checkpoints/stable-diffusion-v1-4
    cfg = _load('rgb2event.py')
    assert cfg.model.backbone.pretrained == 'checkpoints/stable-diffusion-v1-4'
    init_default_scope('mmseg')
    with pytest.raises(MissingDataError, match='is not a directory') as err:
        MODELS.build(cfg.model)
    assert 'hf download CompVis/stable-diffusion-v1-4' in str(err.value)
    assert 'MADM_SD_PATH' in str(err.value)

    # An incomplete folder: the error lists every missing file.
    (tmp_path / 'checkpoints' / 'stable-diffusion-v1-4' / 'unet').mkdir(parents=True)
    (tmp_path / 'checkpoints' / 'stable-diffusion-v1-4' / 'unet' / 'config.json').write_text('{}')
    with pytest.raises(MissingDataError) as err:
        MODELS.build(cfg.model)
    message = str(err.value)
    for rel in ('unet/diffusion_pytorch_model.safetensors', 'vae/config.json',
                'scheduler/scheduler_config.json', 'text_encoder/model.safetensors',
                'tokenizer/vocab.json'):
        assert rel in message
    assert 'unet/config.json' not in message
