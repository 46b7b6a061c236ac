"""The demo machinery (madm/utils/demo.py, configs/madm/demo_*.py, tools/demo.py)."""
import json
import math
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from madm.apis.tiny_sd_pretraining import PRIOR_RECORD, PriorSchedule
from madm.utils.demo import (ABLATION_VARIANTS, DEMO_VARIANTS, MODALITIES, DemoDataSize,
                             demo_config, demo_uses_prior, format_benchmark_section,
                             format_demo_table, gap_closed, mean_std, replace_markdown_section,
                             run_demo)
from madm.utils import demo as demo_module


def test_gap_closed_by_hand():
    assert gap_closed(20.0, 35.0, 50.0) == pytest.approx(0.5)
    assert gap_closed(20.0, 10.0, 40.0) == pytest.approx(-0.5)  # worse than source-only
    assert math.isnan(gap_closed(30.0, 35.0, 30.0))  # no gap to close


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([4.0]) == (4.0, 0.0)
    with pytest.raises(ValueError, match='at least one'):
        mean_std([])


@pytest.mark.parametrize('modality', MODALITIES)
def test_demo_configs_build_the_intended_variants(modality, monkeypatch):
    monkeypatch.setenv('MADM_DEMO_DATA', '/somewhere')
    num_classes = 9 if modality == 'infrared' else 11
    for variant in DEMO_VARIANTS + ABLATION_VARIANTS:
        cfg = Config.fromfile(demo_config(modality, variant))
        train_set = cfg.train_dataloader.dataset
        assert cfg.model.decode_head.num_classes == num_classes
        # events and depth: the tiny SD prior that tools/demo.py pretrains next to the data;
        # infrared: the random tiny preset
        if modality != 'infrared':
            assert cfg.model.backbone.pretrained == f'/somewhere/{modality}/tiny-sd'
            assert 'preset' not in cfg.model.backbone
        else:
            assert cfg.model.backbone.preset == 'tiny' and 'pretrained' not in cfg.model.backbone
        assert cfg.model.decode_head.fusion_stride == 4
        assert cfg.train_cfg.max_iters == 200 and cfg.optim_wrapper.type == 'OptimWrapper'
        assert cfg.test_dataloader.dataset.data_root.startswith(f'/somewhere/{modality}/')
        if variant in ('source-only', 'oracle'):
            assert cfg.model.type == 'EncoderDecoder' and 'teacher_alpha' not in cfg.model
            expected = 'CityscapesTaskDataset' if variant == 'source-only' else \
                cfg.test_dataloader.dataset.type
            assert train_set.type == expected
            if variant == 'oracle':
                assert train_set.split == 'train' and train_set.with_labels is True
        else:
            assert cfg.model.type == 'MADM' and train_set.type == 'UDADataset'
            assert len(cfg.model.palette) == num_classes
            assert (cfg.model.dplg is None) == (variant == 'no-dplg')
            assert (cfg.model.lplr is None) == (variant == 'no-lplr')
        if variant in ('source-only', 'madm'):  # the others differ from these in keys only
            init_default_scope('mmseg')
            if modality != 'infrared':  # the prior is not there: build the same architecture
                cfg.model.backbone = dict(cfg.model.backbone, pretrained=None, preset='tiny')
            model = MODELS.build(cfg.model)
            assert model.decode_head.num_classes == num_classes


@pytest.mark.parametrize('modality', MODALITIES)
@pytest.mark.parametrize('variant,scored', [('adabn', 'source-only'), ('madm-target-bn', 'madm')])
def test_target_bn_configs_test_a_checkpoint_with_target_statistics(modality, variant, scored,
                                                                    monkeypatch):
    monkeypatch.setenv('MADM_DEMO_DATA', '/somewhere')
    cfg = Config.fromfile(demo_config(modality, variant))
    base = Config.fromfile(demo_config(modality, scored))
    assert cfg.model == base.model and cfg.test_dataloader == base.test_dataloader
    # the runtime's hooks are kept (a list replaces its base's)
    assert ([h['type'] for h in cfg.custom_hooks]
            == [h['type'] for h in base.custom_hooks] + ['TargetBNStatisticsHook'])
    stats = cfg.custom_hooks[-1]['dataloader']
    test_set = cfg.test_dataloader.dataset
    assert stats['dataset']['type'] == test_set.type and stats['dataset']['split'] == 'train'
    assert stats['dataset']['data_root'] == test_set.data_root
    # the test pipeline's image steps (whole images, sized as at test), no labels
    assert stats['dataset']['pipeline'] == [t for t in test_set.pipeline
                                            if 'Label' not in t['type']]
    assert stats['sampler']['shuffle'] is False


def test_the_event_and_depth_demos_run_the_prior_stage():
    assert [demo_uses_prior(m) for m in MODALITIES] == [m != 'infrared' for m in MODALITIES]


def test_demo_config_rejects_unknown_names():
    with pytest.raises(ValueError, match='modality'):
        demo_config('rgb')
    with pytest.raises(ValueError, match='variant'):
        demo_config('event', 'daformer')


def _result(miou: float) -> dict:
    return {'classes': ['road', 'car'], 'mIoU': miou,
            'metrics': {'IoU.road': 2 * miou, 'IoU.car': 0.0, 'mIoU': miou, 'mAcc': 1.0,
                        'aAcc': 2.0}}


def test_demo_table_has_one_row_per_variant_and_the_gap():
    table = format_demo_table({'source-only': _result(20.0), 'madm': _result(35.0),
                               'oracle': _result(50.0)})
    rows = table.splitlines()
    assert rows[0] == '| method | road | car | mIoU | mAcc | aAcc |'
    assert rows[2] == '| source-only | 40.00 | 0.00 | 20.00 | 1.00 | 2.00 |'
    assert rows[3].startswith('| MADM | 70.00 |')
    assert rows[4].startswith('| oracle (target labels) |')
    assert rows[-1] == 'MADM closes 50% of the source-only -> oracle mIoU gap.'
    with_bn = format_demo_table({'source-only': _result(20.0), 'madm': _result(35.0),
                                 'madm-target-bn': _result(41.0), 'oracle': _result(50.0)})
    assert with_bn.splitlines()[4].startswith('| MADM + target BN | 82.00 |')
    assert with_bn.splitlines()[-1] == (
        'MADM closes 50% of the source-only -> oracle mIoU gap. With its batch-norm statistics '
        're-estimated on the unlabelled target images (not in MADM), 70%.')
    no_gap = format_demo_table({'source-only': _result(20.0), 'madm': _result(35.0),
                                'oracle': _result(20.5)})
    assert 'not clearly better than source-only (+0.50 mIoU)' in no_gap.splitlines()[-1]


def test_benchmark_section_mean_std_and_ablation_verdicts():
    seeds = {0: {'source-only': _result(20.0), 'madm': _result(30.0), 'oracle': _result(40.0),
                 'no-dplg': _result(31.0), 'no-lplr': _result(25.0)},
             1: {'source-only': _result(22.0), 'madm': _result(34.0), 'oracle': _result(42.0),
                 'no-dplg': _result(33.0), 'no-lplr': _result(27.0)}}
    section = format_benchmark_section({'event': seeds}, 'python x.py', 'test box')
    assert section.startswith('## Synthetic adaptation benchmark\n')
    # source-only 21 ± 1.41, MADM 32 ± 2.83, oracle 41 ± 1.41, gap (32-21)/(41-21) = 55%
    # per seed: (30-20)/(40-20) = 50%, (34-22)/(42-22) = 60%
    assert ('| event | 0, 1 | 21.0 ± 1.4 | 32.0 ± 2.8 | 41.0 ± 1.4 | 32.0 ± 1.4 | 26.0 ± 1.4 '
            '| 55% | 50% / 60% |') in section
    noted = format_benchmark_section({'event': seeds}, 'python x.py', 'box',
                                     setup_note='Each seed has its own prior.')
    assert '128x64). Each seed has its own prior. Source-only and oracle' in noted
    assert ('event: DPLG does not help at this scale (MADM 32.0 vs. 32.0 without it, +0.0 mIoU, '
            'inside the seed spread)') in section
    assert 'event: LPLR helps at this scale (MADM 32.0 vs. 26.0 without it, +6.0 mIoU)' in section
    # one seed: means without a "± 0.0", and no verdict on an effect without a spread
    assert 'target BN' not in section  # no column or note without their runs
    for seed, adabn, tbn in ((0, 24.0, 36.0), (1, 26.0, 37.0)):
        seeds[seed].update(adabn=_result(adabn), **{'madm-target-bn': _result(tbn)})
    with_bn = format_benchmark_section({'event': seeds}, 'python x.py', 'box')
    assert ('| target | seeds | source-only | MADM | oracle (target labels) | source-only + '
            'target BN (AdaBN) | MADM + target BN | MADM w/o DPLG | MADM w/o LPLR | gap closed '
            '| gap closed per seed | gap closed, MADM + target BN |') in with_bn
    # MADM + target BN 36.5: (36.5-21)/(41-21) = 78 %
    assert ('| event | 0, 1 | 21.0 ± 1.4 | 32.0 ± 2.8 | 41.0 ± 1.4 | 25.0 ± 1.4 | 36.5 ± 0.7 '
            '| 32.0 ± 1.4 | 26.0 ± 1.4 | 55% | 50% / 60% | 78% |') in with_bn
    # AdaBN (25-21)/20 = 20 %, per seed 4/20, 4/20; MADM + target BN per seed 16/20, 15/20;
    # 36.5 - 25 = 11.5 over AdaBN, more than the spread (1.4)
    assert ('- event: with target BN statistics, source-only (AdaBN) 25.0 (20% of the gap; per '
            'seed 20% / 20%) and MADM 36.5 (78% of the gap; per seed 80% / 75%); MADM\'s '
            'training adds +11.5 mIoU over AdaBN.') in with_bn
    for seed in seeds:
        del seeds[seed]['adabn'], seeds[seed]['madm-target-bn']
    single = format_benchmark_section({'event': {0: seeds[0]}}, 'python x.py', 'box')
    assert '| event | 0 | 20.0 | 30.0 | 40.0 | 31.0 | 25.0 | 50% | 50% |' in single
    assert ('event: LPLR helps at this scale (MADM 30.0 vs. 25.0 without it, +5.0 mIoU, one '
            'seed: no spread to judge it against)') in single


@pytest.mark.parametrize('prior_seed', [0, 2])
def test_run_demo_with_another_prior_seed_loads_that_prior_in_its_own_runs(
        tmp_path, monkeypatch, prior_seed):
    calls = {}
    monkeypatch.setattr(demo_module, 'prepare_demo_data', lambda *a, **k: None)

    def fake_prior(data_root, modality, schedule, seed=0, echo=None):
        calls['prior_seed'] = seed
        return dict(vae_loss_last=0.1, scaling_factor=1.0, seconds=0.0)

    def fake_variant(modality, variant, data_root, work_dir, seed=0, max_iters=None,
                     cfg_options=(), echo=None, checkpoint=None):
        calls[variant] = (work_dir, list(cfg_options))
        return dict(mIoU=1.0)

    monkeypatch.setattr(demo_module, 'prepare_demo_prior', fake_prior)
    monkeypatch.setattr(demo_module, 'run_variant', fake_variant)
    data, work = str(tmp_path / 'data'), str(tmp_path / 'work')
    run_demo('event', data, work, ('source-only', 'madm'), seed=1, prior_seed=prior_seed,
             echo=lambda line: None)
    assert calls['prior_seed'] == prior_seed
    runs = osp.join(work, 'event', 'seed1' if prior_seed == 0 else 'seed1-prior2')
    prior = osp.abspath(osp.join(data, 'event', 'tiny-sd-seed2'))
    expected = [] if prior_seed == 0 else [f'model.backbone.pretrained={prior}']
    for variant in ('source-only', 'madm'):
        assert calls[variant] == (osp.join(runs, variant), expected)
    calls.clear()  # infrared loads no prior: the prior seed changes nothing
    run_demo('infrared', data, work, ('madm',), seed=1, prior_seed=prior_seed,
             echo=lambda line: None)
    assert 'prior_seed' not in calls
    assert calls['madm'] == (osp.join(work, 'infrared', 'seed1', 'madm'), [])


def test_run_demo_scores_adabn_from_the_source_only_checkpoint(tmp_path, monkeypatch):
    calls = {}
    lose_checkpoint = False
    monkeypatch.setattr(demo_module, 'prepare_demo_data', lambda *a, **k: None)

    def fake_variant(modality, variant, data_root, work_dir, seed=0, max_iters=None,
                     cfg_options=(), echo=None, checkpoint=None):
        calls[variant] = checkpoint
        if variant == 'source-only':  # what tools/train.py leaves, in a folder since moved
            os.makedirs(work_dir, exist_ok=True)
            with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
                f.write('/where/it/trained/iter_200.pth')
            if not lose_checkpoint:
                open(osp.join(work_dir, 'iter_200.pth'), 'w').close()
        return dict(mIoU=1.0)

    monkeypatch.setattr(demo_module, 'run_variant', fake_variant)
    work = str(tmp_path / 'work')
    run_demo('infrared', str(tmp_path / 'data'), work, ('source-only', 'adabn'),
             echo=lambda line: None)
    assert calls == {'source-only': None,
                     'adabn': osp.join(work, 'infrared', 'seed0', 'source-only', 'iter_200.pth')}
    # a source run whose checkpoint is gone: one clear error, not tools/test.py's log
    os.remove(osp.join(work, 'infrared', 'seed0', 'source-only', 'iter_200.pth'))
    lose_checkpoint = True
    with pytest.raises(FileNotFoundError, match='iter_200.pth, which is missing'):
        run_demo('infrared', str(tmp_path / 'data'), work, ('source-only', 'adabn'),
                 echo=lambda line: None)
    # a wrong order fails before the data stage
    monkeypatch.setattr(demo_module, 'prepare_demo_data', None)
    for variants in (('adabn',), ('adabn', 'source-only')):
        with pytest.raises(ValueError, match="put 'source-only' before it"):
            run_demo('infrared', str(tmp_path / 'data'), work, variants, echo=lambda line: None)


def test_run_variant_refuses_to_train_a_test_only_variant(tmp_path):
    with pytest.raises(ValueError, match='trains nothing'):
        demo_module.run_variant('event', 'adabn', str(tmp_path), str(tmp_path / 'run'))


def test_replace_markdown_section_keeps_the_other_sections():
    text = '# Benchmarks\n\n## A\n\na\n\n## Synthetic\n\nold\n\n## B\n\nb\n'
    new = replace_markdown_section(text, 'Synthetic', '## Synthetic\n\nnew\n')
    assert new == '# Benchmarks\n\n## A\n\na\n\n## Synthetic\n\nnew\n\n## B\n\nb\n'
    appended = replace_markdown_section('# Benchmarks\n', 'Synthetic', '## Synthetic\n\nx\n')
    assert appended == '# Benchmarks\n\n## Synthetic\n\nx\n'


@pytest.mark.slow
def test_run_demo_end_to_end_on_tiny_event_data(tmp_path):
    """Generate -> prior -> train (2 iterations) -> test for source-only and MADM, then resume."""
    lines = []
    size = DemoDataSize(num_source=4, num_target_train=4, num_target_test=2,
                        source_size=(128, 64), target_size=None)
    prior = PriorSchedule(vae_steps=2, batch_size=2)
    data, work = str(tmp_path / 'data'), str(tmp_path / 'work')
    variants = ('source-only', 'madm', 'adabn', 'madm-target-bn')
    results = run_demo('event', data, work, variants, max_iters=2,
                       data_size=size, prior_schedule=prior, echo=lines.append)
    assert set(results) == set(variants)
    for variant, res in results.items():
        assert len(res['classes']) == 11 and 0.0 <= res['mIoU'] <= 100.0
        with open(osp.join(work, 'event', 'seed0', variant, 'results.json')) as f:
            assert json.load(f)['mIoU'] == res['mIoU']
    assert osp.isfile(osp.join(data, 'event', 'DSEC', '69mask_train_edges', 'synth_train_00_a',
                               '000002.png'))
    assert any(line.startswith('    iter 2/2') for line in lines)  # training progress echoed
    # the prior saw the 4 source images and the 2 target frames MADM trains on
    with open(osp.join(data, 'event', 'tiny-sd', PRIOR_RECORD)) as f:
        assert json.load(f)['num_images'] == 6
    assert any(line.startswith('    VAE step 2/2') for line in lines)
    assert any('stage 6/6' in line and 'MADM + target BN' in line for line in lines)
    # the test-only variants re-estimated the BN statistics of the scored checkpoints
    for variant in ('adabn', 'madm-target-bn'):
        with open(osp.join(work, 'event', 'seed0', variant, 'demo.log')) as f:
            assert 'BN statistics re-estimated on 1 target batches' in f.read()
    # A second run reuses the data, the prior and the finished results.
    again: list[str] = []
    assert run_demo('event', data, work, variants, max_iters=2, data_size=size,
                    prior_schedule=prior, echo=again.append) == results
    assert not any('iter' in line or 'VAE step' in line for line in again)
