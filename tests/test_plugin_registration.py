"""`import madm` registers every madm module, also when loaded through custom_imports."""
import textwrap

from _helpers import run_tool

EXPECTED = {
    'MODELS': ['StableDiffusionBackbone', 'BottleneckProjection', 'DAFormerHead', 'MADM',
               'UDASegDataPreProcessor', 'LatentRegressionLoss'],
    'HOOKS': ['WeightsOnlyCheckpointHook', 'RNGStateHook', 'MergedParamGroupsSchedulerStateHook'],
    'METRICS': ['ClassIoUMetric'],
    'DATASETS': ['UDADataset'],
}


def test_import_madm_registers_everything_in_a_fresh_interpreter(tmp_path):
    script = textwrap.dedent(f"""
        import madm
        from mmseg import registry
        expected = {EXPECTED!r}
        missing = [f'{{reg}}.{{name}}' for reg, names in expected.items()
                   for name in names if getattr(registry, reg).get(name) is None]
        assert not missing, missing
        print('registered ok')
    """)
    path = tmp_path / 'check.py'
    path.write_text(script)
    assert 'registered ok' in run_tool([str(path)], cwd=str(tmp_path)).stdout


def test_custom_imports_from_another_project_registers_madm(tmp_path):
    """A config outside the repo loads madm only through custom_imports (no `import madm`)."""
    cfg = tmp_path / 'other_project_cfg.py'
    cfg.write_text("custom_imports = dict(imports=['madm'], allow_failed_imports=False)\n"
                   "model = dict(type='BottleneckProjection', in_channels=[3], out_channels=[32],\n"
                   "             bottleneck_channels=16, norm_cfg=dict(type='GN', num_groups=8))\n")
    script = tmp_path / 'build.py'
    script.write_text(textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        cfg = Config.fromfile({str(cfg)!r})   # runs custom_imports
        assert 'madm' in sys.modules
        from mmseg.registry import MODELS
        from mmengine.registry import init_default_scope
        init_default_scope('mmseg')
        print(type(MODELS.build(cfg.model)).__name__)
    """))
    assert 'BottleneckProjection' in run_tool([str(script)], cwd=str(tmp_path)).stdout

