"""The embedded demo: synthetic RGB -> depth / infrared / event adaptation on a CPU.

One demo run (``tools/demo.py``, ``make demo``) is up to six stages::

    prepare_demo_data()            data_converters/synthetic.py's generator (resumable)
    prepare_demo_prior()           the tiny SD pretrained on the unlabelled images (resumable;
                                   event and depth, see demo_uses_prior)
    run_variant('source-only')     tools/train.py + tools/test.py in subprocesses
    run_variant('madm')
    run_variant('oracle')
    format_demo_table()            one markdown table of target mIoU

Every variant is a leaf config ``configs/madm/demo_rgb2<modality>[_<variant>].py`` on the
tiny SD architecture. The event and depth demos load it from ``<data>/<modality>/tiny-sd``,
which the prior stage (:mod:`madm.apis.tiny_sd_pretraining`) trains without labels on the
source and target train images, as a stand-in for Stable Diffusion's pretraining; the
infrared demo keeps the random preset (measured better there) and skips that stage. The data
folder reaches the configs through the ``MADM_DEMO_DATA`` environment variable
(``configs/_base_/datasets/demo_*.py``). A variant whose ``results.json`` exists is not run
again, so an interrupted demo resumes.
"""
import copy
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mmengine.logging import print_log

from madm.apis.tiny_sd_pretraining import PriorSchedule, load_prior_record, pretrain_tiny_sd
from madm.evaluation import format_markdown_table

Modality = Literal['depth', 'infrared', 'event']
Variant = Literal['source-only', 'madm', 'oracle', 'adabn', 'madm-target-bn', 'no-dplg',
                  'no-lplr']

MODALITIES: tuple[str, ...] = ('event', 'depth', 'infrared')
#: The demo table's rows, in order: baseline, method, upper bound.
DEMO_VARIANTS: tuple[str, ...] = ('source-only', 'madm', 'oracle')
#: What ``make demo`` (tools/demo.py) runs and prints, in order.
DEMO_TABLE_VARIANTS: tuple[str, ...] = ('source-only', 'madm', 'madm-target-bn', 'oracle')
#: Test-only variants, ``{variant: the variant whose checkpoint it scores}``: no training of
#: their own, the checkpoint is tested after TargetBNStatisticsHook re-estimates its batch-norm
#: statistics on the unlabelled target train images. 'adabn' is the source-only model (AdaBN,
#: the cheapest adaptation there is); 'madm-target-bn' is MADM's student, whose running
#: statistics otherwise come from its source and mixed (pasted, colour-jittered) batches.
TEST_ONLY_VARIANTS: dict[str, str] = {'adabn': 'source-only', 'madm-target-bn': 'madm'}
ABLATION_VARIANTS: tuple[str, ...] = ('no-dplg', 'no-lplr')
VARIANT_NAMES = {'source-only': 'source-only', 'madm': 'MADM', 'oracle': 'oracle (target labels)',
                 'adabn': 'source-only + target BN (AdaBN)', 'madm-target-bn': 'MADM + target BN',
                 'no-dplg': 'MADM w/o DPLG', 'no-lplr': 'MADM w/o LPLR'}
ALL_VARIANTS: tuple[str, ...] = DEMO_VARIANTS + tuple(TEST_ONLY_VARIANTS) + ABLATION_VARIANTS
#: Smallest oracle - source-only mIoU difference that counts as a gap to close.
MIN_GAP = 1.0
_REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@dataclass(frozen=True)
class DemoDataSize:
    """How much synthetic data one demo modality generates.

    Attributes:
        num_source (int): Labelled source RGB images.
        num_target_train (int): Target train images (events: label windows, of
            which MADM's frame rule keeps every second one).
        num_target_test (int): Target test images (events: label windows).
        source_size (tuple[int, int]): Source ``(W, H)``.
        target_size (tuple[int, int] | None): Target ``(W, H)``; None for events
            (always DSEC's 640x480 sensor).
    """

    num_source: int
    num_target_train: int
    num_target_test: int
    source_size: tuple[int, int]
    target_size: tuple[int, int] | None


#: Demo data per modality, at the scale the demo configs train at (~128 px wide).
DEMO_DATA: dict[str, DemoDataSize] = {
    'event': DemoDataSize(300, 300, 80, (128, 64), None),
    'depth': DemoDataSize(300, 200, 60, (128, 64), (128, 128)),
    'infrared': DemoDataSize(300, 200, 60, (128, 64), (128, 96)),
}


#: How the demo's tiny SD prior is pretrained (for the demos whose configs load one: events,
#: depth). Measured on the event demo, training seeds 0-2 sharing one prior (docs/benchmarks.md,
#: development runs): MADM closed 49% of the source-only -> oracle gap with the VAE pretrained
#: alone, 60% with the UNet as well. With one prior per seed (tools/benchmark_synthetic.py,
#: seeds 0-4) the same setting closes 36%.
DEMO_PRIOR = PriorSchedule(vae_steps=600, unet_steps=600)
#: Folder of the prior inside ``<data_root>/<modality>`` (the demo configs load it from there).
PRIOR_DIR = 'tiny-sd'


def prior_dir(prior_seed: int = 0) -> str:
    """Folder name of the prior pretrained with ``prior_seed``: the configs' one for seed 0."""
    return PRIOR_DIR if prior_seed == 0 else f'{PRIOR_DIR}-seed{prior_seed}'


def runs_dir(work_dir: str, modality: Modality, seed: int, prior_seed: int = 0) -> str:
    """Folder of one demo's runs: ``<work_dir>/<modality>/seed<seed>[-prior<prior_seed>]``."""
    suffix = '' if prior_seed == 0 else f'-prior{prior_seed}'
    return osp.join(work_dir, modality, f'seed{seed}{suffix}')


def demo_config(modality: Modality, variant: Variant = 'madm',
                config_dir: str = osp.join(_REPO_ROOT, 'configs', 'madm')) -> str:
    """Path of a demo leaf config.

    Args:
        modality (Modality): 'depth', 'infrared' or 'event'.
        variant (Variant): 'madm' or a baseline / ablation. Defaults to 'madm'.
        config_dir (str): Folder of the leaf configs. Defaults to the repo's ``configs/madm``.

    Returns:
        str: ``<config_dir>/demo_rgb2<modality>[_<variant>].py``.
    """
    if modality not in MODALITIES:
        raise ValueError(f'modality must be one of {MODALITIES}, got {modality!r}')
    if variant not in ALL_VARIANTS:
        raise ValueError(f'variant must be one of {ALL_VARIANTS}, '
                         f'got {variant!r}')
    suffix = '' if variant == 'madm' else f'_{variant}'
    return osp.join(config_dir, f'demo_rgb2{modality}{suffix}.py')


def prepare_demo_data(data_root: str, modality: Modality, size: DemoDataSize | None = None,
                      seed: int = 0) -> str:
    """Generate (or complete) the synthetic source and target of one modality.

    The generator keeps existing files, so a second call is cheap and an
    interrupted one resumes.

    Args:
        data_root (str): Demo data folder (``MADM_DEMO_DATA``); this modality goes
            to ``<data_root>/<modality>``.
        modality (Modality): Target modality.
        size (DemoDataSize | None): Data amounts and sizes. Defaults to
            ``DEMO_DATA[modality]``.
        seed (int): Data seed. Defaults to 0.

    Returns:
        str: ``<data_root>/<modality>``.
    """
    from madm.datasets.conversion.synthetic import generate_synthetic_dataset
    size = size or DEMO_DATA[modality]
    out = osp.join(data_root, modality)
    generate_synthetic_dataset(out, modality, num_source=size.num_source,
                               num_target_train=size.num_target_train,
                               num_target_test=size.num_target_test, seed=seed,
                               source_size=size.source_size, target_size=size.target_size)
    return out


def _loading_steps(pipeline: Sequence[dict]) -> list[dict]:
    """The transforms of a training pipeline that load and resize an image (no labels, crops)."""
    steps = []
    for step in pipeline:
        if step['type'] in ('RandomCrop', 'RandomFlip', 'PackSegInputs'):
            break
        if 'Annotation' not in step['type'] and 'Label' not in step['type']:
            steps.append(copy.deepcopy(step))
    return steps


def _madm_config(modality: Modality, data_root: str):
    """The demo's MADM config with ``MADM_DEMO_DATA`` set to ``data_root`` while it is read."""
    from mmengine.config import Config
    previous = os.environ.get('MADM_DEMO_DATA')
    os.environ['MADM_DEMO_DATA'] = osp.abspath(data_root)
    try:
        return Config.fromfile(demo_config(modality, 'madm'))
    finally:
        if previous is None:
            del os.environ['MADM_DEMO_DATA']
        else:
            os.environ['MADM_DEMO_DATA'] = previous


def demo_uses_prior(modality: Modality, data_root: str = 'data/demo') -> bool:
    """Whether the modality's demo configs load the pretrained tiny SD (``<modality>/tiny-sd``).

    The event and depth demos do; the infrared demo keeps the random tiny preset, which
    measured better there (docs/benchmarks.md).
    """
    pretrained = _madm_config(modality, data_root).model.backbone.get('pretrained')
    return bool(pretrained) and osp.basename(osp.normpath(pretrained)) == PRIOR_DIR


def demo_prior_images(modality: Modality, data_root: str) -> list:
    """The unlabelled images the demo prior trains on, as RGB uint8 arrays.

    The source and target train images of the MADM config, loaded and resized by the first
    transforms of its training pipelines (the random crops and labels are left out), so the
    prior sees each image as the segmenter will.

    Args:
        modality (Modality): Target modality.
        data_root (str): Demo data folder (``MADM_DEMO_DATA``).

    Returns:
        list[np.ndarray]: ``(H, W, 3)`` uint8 RGB images, source first.
    """
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    cfg = _madm_config(modality, data_root)
    init_default_scope('mmseg')
    images = []
    for part in ('source', 'target'):
        dataset_cfg = copy.deepcopy(cfg.train_dataloader.dataset[part])
        dataset_cfg['pipeline'] = _loading_steps(dataset_cfg['pipeline'])
        dataset = DATASETS.build(dataset_cfg)
        # the pipelines load BGR (mmcv); the data preprocessor hands the backbone RGB
        images += [dataset[k]['img'][..., ::-1].copy() for k in range(len(dataset))]
    return images


def prepare_demo_prior(data_root: str, modality: Modality,
                       schedule: PriorSchedule = DEMO_PRIOR, seed: int = 0,
                       echo: Callable[[str], None] | None = None) -> dict:
    """Pretrain the tiny SD prior of one modality into ``<data_root>/<modality>/tiny-sd``.

    Kept when it already exists (resume), like the data. A ``seed`` other than 0 writes
    ``tiny-sd-seed<seed>`` (:func:`prior_dir`) beside the configs' prior.

    Returns:
        dict: The prior's record (:func:`madm.apis.tiny_sd_pretraining.pretrain_tiny_sd`).
    """
    out = osp.join(data_root, modality, prior_dir(seed))
    record = load_prior_record(out)  # a finished prior: its images are not even loaded
    if record is not None:
        return record
    return pretrain_tiny_sd(demo_prior_images(modality, data_root), out, schedule, seed=seed,
                            echo=echo)


_ITER_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?eta: (\S+)')


def _run_logged(cmd: list[str], env: dict[str, str], log_file: str,
                echo: Callable[[str], None] | None) -> None:
    """Run ``cmd``, write all its output to ``log_file`` and echo the training progress."""
    os.makedirs(osp.dirname(log_file) or '.', exist_ok=True)
    with open(log_file, 'a') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=_REPO_ROOT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            match = _ITER_LINE.search(line)
            if match:
                log.flush()
            if match and echo is not None:
                loss = re.search(r'\bloss: (\S+)', line)
                echo(f'    iter {match.group(1)}/{match.group(2)}  '
                     f'loss {loss.group(1) if loss else "?"}  eta {match.group(3)}')
        if proc.wait() != 0:
            raise RuntimeError(f'{" ".join(cmd[1:3])} failed (exit {proc.returncode}); '
                               f'see the log: {log_file}')


def run_variant(modality: Modality, variant: Variant, data_root: str, work_dir: str,
                seed: int = 0, max_iters: int | None = None,
                cfg_options: Sequence[str] = (), config_dir: str | None = None,
                echo: Callable[[str], None] | None = None,
                checkpoint: str | None = None) -> dict:
    """Train one demo variant with ``tools/train.py`` and score it with ``tools/test.py``.

    Args:
        modality (Modality): Target modality.
        variant (Variant): One of :data:`ALL_VARIANTS`.
        data_root (str): Demo data folder (passed as ``MADM_DEMO_DATA``).
        work_dir (str): Folder of this run (checkpoint, logs, ``results.json``).
        seed (int): Training seed (``randomness.seed``). Defaults to 0.
        max_iters (int | None): Override of the schedule's iterations (smoke tests);
            the LR schedule and DPLG keep their configured lengths. Defaults to None.
        cfg_options (Sequence[str]): Further ``--cfg-options`` items. Defaults to ().
        config_dir (str | None): Folder of the leaf configs. Defaults to ``configs/madm``.
        echo (Callable[[str], None] | None): Receives one line per training log line.
        checkpoint (str | None): Score this checkpoint instead of training one; required
            by the test-only variants (:data:`TEST_ONLY_VARIANTS`). Defaults to None.

    Returns:
        dict: ``tools/test.py --out`` JSON: ``classes``, ``IoU``, ``mIoU``, ``mAcc``,
        ``aAcc`` and the raw ``metrics``.
    """
    result_file = osp.join(work_dir, 'results.json')
    if osp.isfile(result_file):
        print_log(f'{variant}: reusing {result_file}', logger='current')
        with open(result_file) as f:
            return json.load(f)
    config = demo_config(modality, variant, **({'config_dir': config_dir} if config_dir else {}))
    env = dict(os.environ, MADM_DEMO_DATA=osp.abspath(data_root))
    options = [f'randomness.seed={seed}', *cfg_options]
    if max_iters is not None:
        options += [f'train_cfg.max_iters={max_iters}', f'train_cfg.val_begin={max_iters + 1}',
                    f'default_hooks.checkpoint.interval={max_iters}']
    if variant in TEST_ONLY_VARIANTS and checkpoint is None:
        raise ValueError(f'{variant!r} trains nothing: pass the {TEST_ONLY_VARIANTS[variant]} '
                         'checkpoint it scores as checkpoint=')
    log_file = osp.join(work_dir, 'demo.log')
    python = sys.executable
    if checkpoint is None:
        _run_logged([python, 'tools/train.py', config, '--work-dir', work_dir,
                     '--cfg-options', *options], env, log_file, echo)
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
    else:
        os.makedirs(work_dir, exist_ok=True)
    _run_logged([python, 'tools/test.py', config, checkpoint, '--work-dir', work_dir,
                 '--out', result_file, '--cfg-options', *options], env, log_file, None)
    with open(result_file) as f:
        return json.load(f)


def gap_closed(source_only: float, madm: float, oracle: float) -> float:
    """Share of the source-only -> oracle gap that MADM closes.

    Args:
        source_only (float): Source-only target mIoU.
        madm (float): MADM target mIoU.
        oracle (float): Target-supervised mIoU.

    Returns:
        float: ``(madm - source_only) / (oracle - source_only)``; NaN when the
        oracle is not better than source-only.
    """
    gap = oracle - source_only
    return (madm - source_only) / gap if gap > 0 else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value).

    Args:
        values (Sequence[float]): At least one value.

    Returns:
        tuple[float, float]: ``(mean, std)`` with ``n - 1`` in the std's denominator.
    """
    if not values:
        raise ValueError('mean_std needs at least one value')
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_demo_table(results: Mapping[str, dict]) -> str:
    """One markdown table of target per-class IoU and mIoU, one row per variant.

    Args:
        results (Mapping[str, dict]): ``{variant: run_variant() result}``.

    Returns:
        str: The table (``madm.evaluation.format_markdown_table``), then, when all
        three demo rows are present, the share of the source-only -> oracle gap
        that MADM closes, also with target BN statistics when that row is there (or a
        note that there is no gap of ``MIN_GAP`` mIoU).
    """
    classes = next(iter(results.values()))['classes']
    table = format_markdown_table(
        {VARIANT_NAMES.get(name, name): res['metrics'] for name, res in results.items()}, classes)
    if all(v in results for v in DEMO_VARIANTS):
        source_only, madm, oracle = (results[v]['mIoU'] for v in DEMO_VARIANTS)
        if oracle - source_only < MIN_GAP:
            table += (f'\n\nThe oracle is not clearly better than source-only '
                      f'({oracle - source_only:+.2f} mIoU): no modality gap to close at this '
                      'scale, so the adaptation cannot be judged here.')
        else:
            table += (f'\n\nMADM closes {100 * gap_closed(source_only, madm, oracle):.0f}% of '
                      'the source-only -> oracle mIoU gap.')
            if 'madm-target-bn' in results:
                with_bn = gap_closed(source_only, results['madm-target-bn']['mIoU'], oracle)
                table += (f' With its batch-norm statistics re-estimated on the unlabelled '
                          f'target images (not in MADM), {100 * with_bn:.0f}%.')
    return table


class StageClock:
    """Elapsed time and ETA over weighted stages (the weights are relative costs).

    Args:
        stages (Mapping[str, float]): ``{stage name: relative cost}`` in run order.
        echo (Callable[[str], None]): Receives the progress lines.
    """

    def __init__(self, stages: Mapping[str, float], echo: Callable[[str], None]) -> None:
        self.stages = dict(stages)
        self.total = sum(self.stages.values())
        self.done = 0.0
        self.echo = echo
        self.start = time.monotonic()
        self.index = 0

    def begin(self, name: str) -> None:
        """Announce stage ``name`` with the elapsed time and the ETA of the whole run."""
        self.index += 1
        elapsed = time.monotonic() - self.start
        # The data and prior stages are near-instant when reused, so no ETA before a run ends.
        runs_done = self.index - 1 - sum(name in self.stages for name in ('data', 'prior'))
        eta = (f'{_clock(elapsed / self.done * (self.total - self.done))}' if runs_done > 0
               else 'after the first run')
        filled = int(20 * self.done / self.total)
        self.echo(f'[{"#" * filled}{"." * (20 - filled)}] stage {self.index}/{len(self.stages)}: '
                  f'{name}  (elapsed {_clock(elapsed)}, ETA {eta})')

    def end(self, name: str) -> None:
        """Mark stage ``name`` done."""
        self.done += self.stages[name]

    def elapsed(self) -> float:
        """Seconds since construction."""
        return time.monotonic() - self.start


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f'{minutes}:{secs:02d}'


# Relative stage costs measured on 2 idle CPU cores (event demo: data 18 s, prior 211 s,
# source-only 60 s, MADM 90 s, oracle 61 s).
_STAGE_COST = {'data': 0.3, 'prior': 3.5, 'source-only': 1.0, 'madm': 1.5, 'oracle': 1.0,
               'adabn': 0.3, 'madm-target-bn': 0.3, 'no-dplg': 1.5, 'no-lplr': 1.4}


def run_demo(modality: Modality, data_root: str, work_dir: str,
             variants: Sequence[Variant] = DEMO_VARIANTS, seed: int = 0,
             max_iters: int | None = None, data_size: DemoDataSize | None = None,
             prior_schedule: PriorSchedule = DEMO_PRIOR, prior_seed: int = 0,
             echo: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Generate the data, train and test every variant, and return their results.

    Args:
        modality (Modality): Target modality.
        data_root (str): Demo data folder (``<data_root>/<modality>``).
        work_dir (str): Runs go to ``runs_dir(work_dir, modality, seed, prior_seed)/<variant>``.
        variants (Sequence[Variant]): Variants to run, in order; a test-only variant
            (:data:`TEST_ONLY_VARIANTS`) after the one whose checkpoint it scores.
            Defaults to source-only, MADM, oracle.
        seed (int): Training seed. Defaults to 0.
        max_iters (int | None): Iteration override (smoke tests). Defaults to None.
        data_size (DemoDataSize | None): Data override. Defaults to ``DEMO_DATA[modality]``.
        prior_schedule (PriorSchedule): How the prior is pretrained. Defaults to
            :data:`DEMO_PRIOR`.
        prior_seed (int): Seed of the prior's pretraining. 0 is the prior the configs
            load; another seed pretrains ``tiny-sd-seed<prior_seed>``, which every variant
            loads instead, and its runs go to ``seed<seed>-prior<prior_seed>``. Measured:
            two priors moved the result as much as the training seed (docs/benchmarks.md).
            Ignored by a demo that loads no prior. Defaults to 0.
        echo (Callable[[str], None] | None): Receives progress lines. Defaults to
            ``print_log(line, logger='current')``.

    Returns:
        dict[str, dict]: ``{variant: run_variant() result}``.
    """
    echo = echo or (lambda line: print_log(line, logger='current'))
    for i, variant in enumerate(variants):  # before minutes of data and prior
        scored = TEST_ONLY_VARIANTS.get(variant)
        if scored and scored not in variants[:i]:
            raise ValueError(f'{variant!r} scores the {scored!r} checkpoint: put {scored!r} '
                             f'before it in variants (got {tuple(variants)})')
    uses_prior = demo_uses_prior(modality, data_root)
    clock = StageClock({'data': _STAGE_COST['data'],
                        **({'prior': _STAGE_COST['prior']} if uses_prior else {}),
                        **{v: _STAGE_COST[v] for v in variants}}, echo)
    clock.begin(f'synthetic RGB + {modality} data -> {osp.join(data_root, modality)}')
    prepare_demo_data(data_root, modality, data_size)
    clock.end('data')
    options = []
    prior_seed = prior_seed if uses_prior else 0  # a demo without a prior has one kind of run
    if uses_prior:
        prior_path = osp.join(data_root, modality, prior_dir(prior_seed))
        clock.begin(f'tiny SD prior, pretrained without labels -> {prior_path}')
        prior = prepare_demo_prior(data_root, modality, prior_schedule, seed=prior_seed,
                                   echo=echo)
        if prior_seed != 0:
            options.append(f'model.backbone.pretrained={osp.abspath(prior_path)}')
        unet = (f", UNet denoising MSE {prior['unet_loss_last']:.4f}"
                if 'unet_loss_last' in prior else '')
        echo(f"    VAE L1 {prior['vae_loss_last']:.4f}{unet}, latent scaling factor "
             f"{prior['scaling_factor']:.3f} ({prior['seconds']:.0f} s)")
        clock.end('prior')
    runs = runs_dir(work_dir, modality, seed, prior_seed)
    results = {}
    for variant in variants:
        config = osp.basename(demo_config(modality, variant))
        checkpoint = None
        if variant in TEST_ONLY_VARIANTS:
            scored_run = osp.join(runs, TEST_ONLY_VARIANTS[variant])
            with open(osp.join(scored_run, 'last_checkpoint')) as f:
                # the file name only: the runs folder may have been moved since
                checkpoint = osp.join(scored_run, osp.basename(f.read().strip()))
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(
                    f'{variant!r} scores {checkpoint}, which is missing: delete '
                    f'{scored_run} and run the demo again to retrain it')
        clock.begin(f'{"test" if checkpoint else "train + test"} {VARIANT_NAMES[variant]} '
                    f'({config})')
        results[variant] = run_variant(
            modality, variant, data_root, osp.join(runs, variant), seed=seed,
            max_iters=max_iters, cfg_options=options, echo=echo, checkpoint=checkpoint)
        echo(f'    target mIoU {results[variant]["mIoU"]:.2f}')
        clock.end(variant)
    echo(f'done in {_clock(clock.elapsed())}')
    return results


def _gap_cell(mious: Mapping[str, float]) -> str:
    """``gap_closed`` of a variant -> mIoU mapping as a table cell; '-' without a real gap."""
    if not all(v in mious for v in DEMO_VARIANTS) or (
            mious['oracle'] - mious['source-only'] < MIN_GAP):
        return '-'
    return f"{100 * gap_closed(mious['source-only'], mious['madm'], mious['oracle']):.0f}%"


def format_benchmark_section(results: Mapping[str, Mapping[int, Mapping[str, dict]]],
                             command: str, machine: str,
                             title: str = 'Synthetic adaptation benchmark',
                             setup_note: str = '') -> str:
    """The docs/benchmarks.md section: target mIoU per modality as mean ± std over seeds.

    Args:
        results (Mapping): ``{modality: {seed: {variant: run_variant() result}}}``.
        command (str): The command that produced ``results``.
        machine (str): Where it ran.
        title (str): Section heading. Defaults to 'Synthetic adaptation benchmark'.
        setup_note (str): Sentences on what the runs started from (which prior),
            added to the set-up paragraph. Defaults to ''.

    Returns:
        str: Markdown starting with ``## <title>``: set-up, command, one table row
        per modality (with the gap closed per seed: the spread is part of the result),
        per modality what the target-BN tests give (when run) and what each ablated
        component changed.
    """
    variants = [v for v in ALL_VARIANTS
                if any(v in runs for seeds in results.values() for runs in seeds.values())]
    target_bn = 'madm-target-bn' in variants
    header = ['target', 'seeds', *(VARIANT_NAMES[v] for v in variants), 'gap closed',
              'gap closed per seed', *(['gap closed, MADM + target BN'] if target_bn else [])]
    lines = [f'## {title}', '',
             'What is measured: target-test mIoU (%) of the CPU demo (`tools/demo.py`, '
             'configs/madm/demo_rgb2*.py): the tiny SD preset trained '
             '200 iterations (batch 2, 64x64 crops) on synthetic data from '
             'data_converters/synthetic.py (source 300 labelled RGB images at 128x64). '
             + (setup_note + ' ' if setup_note else '') +
             'Source-only and oracle are the same backbone, neck and head as a plain '
             'EncoderDecoder trained on the source, or on the labelled target train split. '
             '"gap closed" is (MADM - source-only) / (oracle - source-only) of the means, '
             f'"-" when the oracle is less than {MIN_GAP:g} mIoU better than source-only; '
             '"per seed" applies the same formula to each seed\'s three runs. '
             'Values are mean ± sample std over the training seeds (the data is fixed, '
             'seed 0).', '',
             f'Machine: {machine}.', '', 'Command:', '', f'    {command}', '',
             '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    notes, target_bn_notes = [], []
    for modality, seeds in results.items():
        cells = [modality, ', '.join(str(s) for s in seeds)]
        means, stds = {}, {}
        for variant in variants:
            values = [runs[variant]['mIoU'] for runs in seeds.values() if variant in runs]
            if values:
                means[variant], stds[variant] = mean_std(values)
                # one seed has no spread: a "± 0.0" would claim one
                cells.append(f'{means[variant]:.1f} ± {stds[variant]:.1f}' if len(values) > 1
                             else f'{means[variant]:.1f}')
            else:
                cells.append('-')
        cells.append(_gap_cell(means))
        per_seed = [_gap_cell({v: r['mIoU'] for v, r in runs.items()}) for runs in seeds.values()
                    if all(v in runs for v in DEMO_VARIANTS)]
        cells.append(' / '.join(per_seed) or '-')
        if target_bn:
            cells.append(_gap_cell({**means, 'madm': means['madm-target-bn']})
                         if 'madm-target-bn' in means else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
        if any(v in means for v in TEST_ONLY_VARIANTS):
            target_bn_notes.append(_target_bn_note(modality, seeds, means, stds))
        for variant, component in (('no-dplg', 'DPLG'), ('no-lplr', 'LPLR')):
            if variant in means and 'madm' in means:
                delta = means['madm'] - means[variant]
                verdict = 'helps' if delta > 0 else 'does not help'
                within = _spread_remark(delta, max(stds['madm'], stds[variant]), len(seeds))
                notes.append(f'- {modality}: {component} {verdict} at this scale '
                             f'(MADM {means["madm"]:.1f} vs. {means[variant]:.1f} without it, '
                             f'{delta:+.1f} mIoU{within}).')
    if target_bn_notes:
        lines += ['', 'Target BN statistics (a checkpoint tested after its batch-norm statistics '
                  'are re-estimated on the unlabelled target train images, whole and sized as '
                  'at test; no training, no labels; not in MADM: '
                  '`configs/madm/demo_rgb2*_adabn.py` for source-only, '
                  '`*_madm-target-bn.py` for MADM):', '', *target_bn_notes]
    if notes:
        lines += ['', 'Ablations (MADM minus the ablated run, means over seeds):', '', *notes]
    return '\n'.join(lines) + '\n'


def _spread_remark(delta: float, spread: float, num_seeds: int) -> str:
    """What a difference of means is worth next to the seeds' spread, as a clause."""
    if num_seeds == 1:
        return ', one seed: no spread to judge it against'
    # a difference no larger than the seeds' own spread is not an effect
    return ', inside the seed spread' if abs(delta) <= spread else ''


def _target_bn_note(modality: str, seeds: Mapping[int, Mapping[str, dict]],
                    means: Mapping[str, float], stds: Mapping[str, float]) -> str:
    """One line on a modality's test-only target-BN variants: mIoU, gap closed, and what
    MADM's training adds over AdaBN when both use target statistics."""
    parts = []
    for variant, what in (('adabn', 'source-only (AdaBN)'), ('madm-target-bn', 'MADM')):
        if variant not in means:
            continue
        share = _gap_cell({**means, 'madm': means[variant]})
        per_seed = [_gap_cell({**{v: r['mIoU'] for v, r in runs.items()},
                               'madm': runs[variant]['mIoU']})
                    for runs in seeds.values()
                    if variant in runs and all(v in runs for v in DEMO_VARIANTS)]
        detail = (f' ({share} of the gap; per seed {" / ".join(per_seed)})' if share != '-'
                  else '')
        parts.append(f'{what} {means[variant]:.1f}{detail}')
    note = f'- {modality}: with target BN statistics, ' + ' and '.join(parts)
    if 'adabn' in means and 'madm-target-bn' in means:
        delta = means['madm-target-bn'] - means['adabn']
        within = _spread_remark(delta, max(stds['madm-target-bn'], stds['adabn']), len(seeds))
        note += f'; MADM\'s training adds {delta:+.1f} mIoU over AdaBN{within}'
    return note + '.'


def replace_markdown_section(text: str, title: str, section: str) -> str:
    """Replace the ``## <title>`` section of a markdown text, or append it.

    The section runs from its heading to the next level-2 heading (or the end), so
    the other sections are kept byte for byte.

    Args:
        text (str): The whole markdown file.
        title (str): The heading text, without ``## ``.
        section (str): The new section, starting with its heading.

    Returns:
        str: The updated text.
    """
    lines = text.splitlines(keepends=True)
    heading = f'## {title}'
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if not section.endswith('\n'):
        section += '\n'
    if start is None:
        sep = '' if not text or text.endswith('\n\n') else ('\n' if text.endswith('\n') else '\n\n')
        return text + sep + section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith('## ')), len(lines))
    tail = ''.join(lines[end:])
    return ''.join(lines[:start]) + section + ('\n' + tail if tail else '')
