"""Training speed, peak memory, FLOPs and MFU of a MADM config on random-weight SD (issue 8).

    python tools/benchmark.py configs/madm/rgb2event.py --preset sd14 --device cuda \\
        --batch 2 --size 512 512 --iters 10 --warmup 3 --amp bf16 --out result.json
    python tools/benchmark.py configs/madm/rgb2event.py --preset tiny --device cpu \\
        --size 128 128 --iters 3 --warmup 1 --amp none

Each speed lever is one flag, so one run per lever measures it on or off; ``--sweep`` measures
them all in one process (the order and combinations of ``madm.utils.benchmark.LEVER_SWEEP``,
each variant overriding the other flags), saving after every variant:

    python tools/benchmark.py configs/madm/rgb2event.py --preset sd14 --device cuda \\
        --iters 8 --warmup 3 --sweep --deadline-s 420 --out sweep.json

No SD folder and no dataset are read: the backbone is the chosen preset with random weights,
the batches synthetic.
FLOPs are counted on a meta-device copy (``--flops-only`` stops there, e.g. for sd14 at 512x512
on a machine that cannot run it). ``--host-sync-audit`` lists, from a meta-device step, the calls
that would make the host wait for a GPU (``madm.utils.host_sync_audit``).
``--memory-estimate`` estimates a step's peak GPU memory on the meta device, on any machine
(``madm.utils.meta_memory``; with ``--sweep``, of each variant):

    python tools/benchmark.py configs/madm/rgb2depth.py --preset sd14 --memory-estimate \\
        --fusion-stride 4 --vae-dtype bfloat16 --fused-adamw

``--roofline`` bounds a step's GPU time from below on the meta device: each operator's FLOPs
and least memory traffic at an H100's or H200's datasheet peaks, and the MFU ceilings they
allow (``madm.utils.roofline``; with ``--sweep``, of each variant):

    python tools/benchmark.py configs/madm/rgb2event.py --preset sd14 --roofline \\
        --fusion-stride 4 --vae-dtype bfloat16 --fused-adamw

``--check-fp32-emulated`` compares a step's loss terms in fp32 and under ``--amp`` without a
GPU: the model runs on the CPU with CUDA autocast's casts emulated (``EmulatedCUDAAutocast``),
so a precision switch inside autocast (GroupNorm in bf16) is checked as on a GPU (sd14 needs
about 10 GB of memory; minutes at 512x512, less at a smaller ``--size``):

    python tools/benchmark.py configs/madm/rgb2event.py --preset sd14 --size 256 256 \\
        --check-fp32-emulated --group-norm-autocast --head-resize matmul --vae-dtype bfloat16

``--optimizer-overhead`` times the host's fixed cost of clipping and AdamW over the task's
parameter groups (``--merge-param-groups`` merges them into one per setting).
See madm/utils/benchmark.py for how each number is measured.
Prints a markdown table at the end; ``--out`` also writes it as JSON.
"""
import argparse
import dataclasses
import json

import madm  # noqa: F401  isort: skip
from mmengine.config import Config, DictAction

from madm.utils import atomic_write_json
from madm.utils.benchmark import (LEVER_SWEEP, BenchmarkSettings, audit_host_syncs_on_meta,
                                  check_fp32_emulated, check_fp32_emulated_of_variants,
                                  count_flops_on_meta, estimate_memory_of_variants,
                                  estimate_peak_memory_on_meta, estimate_roofline_of_variants,
                                  estimate_roofline_on_meta, format_host_sync_audit,
                                  format_fp32_check_emulated,
                                  format_fp32_checks_emulated_markdown,
                                  format_markdown, format_memory_estimate,
                                  format_memory_estimates_markdown, format_roofline,
                                  format_roofline_variants_markdown, format_sweep_markdown,
                                  run_benchmark, run_lever_sweep, time_optimizer_overhead)
from madm.utils.roofline import DEVICE_SPECS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='task config, e.g. configs/madm/rgb2event.py')
    parser.add_argument('--preset', choices=('sd14', 'tiny'), default='sd14',
                        help='random-weight SD architecture (tiny also shrinks neck and head)')
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    parser.add_argument('--batch', type=int, default=2, help='source/target pairs per iteration')
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'),
                        help='crop size, multiples of 64')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations (median)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument('--amp', choices=('bf16', 'fp16', 'none'), default='bf16',
                        help='autocast dtype; fp16 adds a dynamic GradScaler (the reference)')
    parser.add_argument('--grad-checkpointing', action=argparse.BooleanOptionalAction,
                        default=None, help='recompute UNet activations in backward (default: '
                        "the config's)")
    parser.add_argument('--attention', choices=('sdpa', 'math'), default='sdpa')
    parser.add_argument('--vae-dtype', choices=('float32', 'float16', 'bfloat16'), default=None,
                        help="VAE weight dtype (it always runs without grad); default: config's")
    parser.add_argument('--fusion-stride', type=int, default=None,
                        help='DAFormer fusion at 1/s of the image (default: at s0, stride 1)')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the UNet, block by block')
    parser.add_argument('--compile-unet-whole', action='store_true',
                        help='with --compile: the UNet as one graph (its inductor gradients '
                             'were wrong on a CPU, tools/check_inductor_gradients.py)')
    parser.add_argument('--head-with-cp', action='store_true',
                        help="recompute the head's fusion in backward (DAFormerHead with_cp)")
    parser.add_argument('--head-resize', choices=('interpolate', 'matmul'), default=None,
                        help="how the head resizes its embeddings (DAFormerHead resize_impl); "
                             "default: the config's")
    parser.add_argument('--compile-head', action='store_true',
                        help='torch.compile the student and teacher decode heads')
    parser.add_argument('--compile-vae', action='store_true',
                        help="torch.compile the frozen VAE's encoder and decoder")
    parser.add_argument('--compile-mode', default='default',
                        choices=('default', 'reduce-overhead', 'max-autotune-no-cudagraphs'),
                        help="torch.compile mode of --compile, --compile-head and "
                             "--compile-vae ('reduce-overhead': CUDA graphs, not for the VAE)")
    parser.add_argument('--compile-backend', default='inductor',
                        help="torch.compile backend of the three flags above ('aot_eager': "
                             'trace forward and backward without generating kernels). A '
                             "compiled step's gradients are checked against eager's")
    parser.add_argument('--fused-adamw', action='store_true', help='AdamW(fused=True)')
    parser.add_argument('--channels-last', action='store_true',
                        help='UNet and VAE in channels-last memory format')
    parser.add_argument('--non-blocking-input', action='store_true',
                        help='pinned batch, copied with non_blocking=True (CUDA)')
    parser.add_argument('--class-mix-on-device', action='store_true',
                        help='ClassMix chooses its classes on the device, without a host sync '
                             '(class_mix.on_device; not in MADM)')
    parser.add_argument('--deferred-log', action='store_true',
                        help='the clipped gradient norm stays on the device instead of a '
                             'float() in the step (DeferredRuntimeInfoHook in training)')
    parser.add_argument('--group-norm-autocast', action='store_true',
                        help="the GroupNorms of UNet, VAE and neck in the autocast dtype "
                             '(group_norm_precision=autocast) instead of float32')
    parser.add_argument('--merge-param-groups', action=argparse.BooleanOptionalAction,
                        default=None, help='one AdamW parameter group per setting '
                        '(MergedParamGroupsOptimWrapperConstructor) instead of one per '
                        "parameter (default: the config's)")
    parser.add_argument('--cudnn-benchmark', action='store_true',
                        help='torch.backends.cudnn.benchmark (autotuned convolutions)')
    parser.add_argument('--check-fp32', action='store_true',
                        help='compare the loss terms of one step in fp32 and under --amp')
    parser.add_argument('--check-fp32-emulated', action='store_true',
                        help='only compare the loss terms of one step in fp32 and under --amp '
                             'as CUDA autocast casts, emulated on the CPU (no GPU needed); '
                             'run nothing else. With --sweep: of each variant')
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='device peak for MFU (known GPUs are looked up; CPUs have none)')
    parser.add_argument('--flops-only', action='store_true',
                        help='only count FLOPs per iteration on the meta device, run nothing')
    parser.add_argument('--host-sync-audit', action='store_true',
                        help='only list the calls of a step that would make the host wait for '
                             'a GPU, found on the meta device; run nothing')
    parser.add_argument('--memory-estimate', action='store_true',
                        help="only estimate a training step's peak GPU memory on the meta "
                             'device (autocast emulated as on CUDA); run nothing. With '
                             '--sweep: of each variant')
    parser.add_argument('--roofline', action='store_true',
                        help="only bound a training step's GPU time from below on the meta "
                             'device (FLOPs and least memory traffic of every operator at '
                             'the datasheet peaks) and the MFU it allows; run nothing. With '
                             '--sweep: of each variant')
    parser.add_argument('--roofline-device', choices=sorted(DEVICE_SPECS), default='h100',
                        help='whose peaks --roofline uses (default: h100)')
    parser.add_argument('--optimizer-overhead', action='store_true',
                        help="only time the host's fixed cost of the optimizer part of a "
                             'step (clipping, AdamW, zero_grad) on one-element stand-ins of '
                             "the task's parameter groups; run nothing else")
    parser.add_argument('--inference-sizes', nargs='*', default=['512x512', '448x640'],
                        metavar='HxW', help='sizes of the inference images/s timing; default: '
                        "512x512 and DSEC's 640x440 padded to 640x448 (W x H); none skips it")
    parser.add_argument('--sweep', action='store_true',
                        help='measure every lever of LEVER_SWEEP in one process; --out gets '
                        'the list of results, rewritten after each variant')
    parser.add_argument('--only', nargs='+', metavar='NAME', default=None,
                        help='with --sweep: run only these variants of LEVER_SWEEP, by name, '
                        'in the order given')
    parser.add_argument('--profile', nargs='*', metavar='NAME', default=None,
                        help='profile one step (operators by device time): with --sweep, of '
                        'the named variants; without, of the run (no names)')
    parser.add_argument('--deadline-s', type=float, default=None,
                        help='with --sweep: start no variant that would end after this many '
                        'seconds (skipped variants are recorded as such)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.lplr.mixed_weight=1.0')
    parser.add_argument('--out', help='write the result as JSON here')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | list[dict]:
    """Run the benchmark (or the sweep), print its markdown table and return the result."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    settings = BenchmarkSettings(
        preset=args.preset, device=args.device, batch_size=args.batch, size=tuple(args.size),
        iters=args.iters, warmup=args.warmup, amp=args.amp,
        gradient_checkpointing=args.grad_checkpointing, attention=args.attention,
        vae_dtype=args.vae_dtype, fusion_stride=args.fusion_stride, compile=args.compile,
        compile_unet_whole=args.compile_unet_whole,
        head_with_cp=args.head_with_cp, head_resize=args.head_resize,
        compile_head=args.compile_head, compile_vae=args.compile_vae,
        compile_mode=args.compile_mode, compile_backend=args.compile_backend,
        fused_adamw=args.fused_adamw, channels_last=args.channels_last,
        group_norm_autocast=args.group_norm_autocast, non_blocking_input=args.non_blocking_input,
        class_mix_on_device=args.class_mix_on_device, deferred_log=args.deferred_log,
        cudnn_benchmark=args.cudnn_benchmark, merge_param_groups=args.merge_param_groups,
        seed=args.seed)
    if args.check_fp32_emulated:  # runs on the CPU whatever --device says
        settings = dataclasses.replace(settings, device='cpu')
    sizes = tuple(tuple(int(v) for v in hw.lower().split('x')) for hw in args.inference_sizes)
    if args.sweep:
        def save(results: list[dict]) -> None:
            if args.out:
                atomic_write_json(args.out, results)

        if args.optimizer_overhead:
            raise SystemExit('--optimizer-overhead times one setting; drop --sweep')
        variants = LEVER_SWEEP
        if args.only:
            unknown = set(args.only) - {name for name, _ in LEVER_SWEEP}
            if unknown:
                raise SystemExit(f'--only: unknown variants {sorted(unknown)}; known: '
                                 f'{[name for name, _ in LEVER_SWEEP]}')
            by_name = dict(LEVER_SWEEP)
            variants = tuple((name, by_name[name]) for name in args.only)  # in the given order
        if args.memory_estimate:
            results = estimate_memory_of_variants(cfg, settings, variants, on_result=save)
            print(format_memory_estimates_markdown(results))
            return results
        if args.check_fp32_emulated:
            results = check_fp32_emulated_of_variants(cfg, settings, variants, on_result=save)
            print(format_fp32_checks_emulated_markdown(results))
            return results
        if args.roofline:
            results = estimate_roofline_of_variants(cfg, settings, variants,
                                                    device=args.roofline_device,
                                                    on_result=save)
            print(format_roofline_variants_markdown(results))
            return results
        results = run_lever_sweep(cfg, settings, variants=variants, inference_sizes=sizes,
                                  deadline_s=args.deadline_s, peak_tflops=args.peak_tflops,
                                  profile_for=tuple(args.profile or ()), on_result=save)
        for entry in results:
            if entry.get('profile'):
                print(f"\n### profile of one step: {entry['name']}\n{entry['profile']}")
        print(format_sweep_markdown(results))
        return results
    if args.memory_estimate:
        try:
            estimate = estimate_peak_memory_on_meta(cfg, settings)
        except ValueError as error:  # a lever the estimate does not model
            raise SystemExit(f'--memory-estimate: {error}') from None
        print(format_memory_estimate(estimate, settings))
        result = dict(settings=vars(settings), memory_estimate=estimate)
    elif args.roofline:
        try:
            bound = estimate_roofline_on_meta(cfg, settings, args.roofline_device)
        except ValueError as error:  # a lever the bound does not model
            raise SystemExit(f'--roofline: {error}') from None
        print(format_roofline(bound, settings))
        result = dict(settings=vars(settings), roofline=bound)
    elif args.check_fp32_emulated:
        try:
            check = check_fp32_emulated(cfg, settings)
        except ValueError as error:  # fp32 itself, or a lever the emulation does not model
            raise SystemExit(f'--check-fp32-emulated: {error}') from None
        print(format_fp32_check_emulated(check, settings))
        result = dict(settings=vars(settings), fp32_check_emulated=check)
    elif args.optimizer_overhead:
        overhead = time_optimizer_overhead(cfg, settings)
        print(f"Optimizer part of a step, host time on this machine (one-element stand-ins; "
              f"{overhead['form']} AdamW, {overhead['params']} parameters in "
              f"{overhead['param_groups']} groups): {overhead['seconds'] * 1e3:.1f} ms")
        result = dict(settings=vars(settings), optimizer_overhead=overhead)
    elif args.host_sync_audit:
        audit = audit_host_syncs_on_meta(cfg, settings)
        print(format_host_sync_audit(audit))
        result = dict(settings=vars(settings), host_sync_audit=audit)
    elif args.flops_only:
        flops = count_flops_on_meta(cfg, settings)
        result = dict(settings=vars(settings), flops_per_iter=float(flops))
        print(f'| preset | batch | size (HxW) | fusion stride | FLOPs/iter (model, meta count) |\n'
              f'|---|---|---|---|---|\n| {args.preset} | {args.batch} | '
              f'{args.size[0]}x{args.size[1]} | {args.fusion_stride or "none"} | '
              f'{flops / 1e12:.3f} T |')
    else:
        measured = run_benchmark(cfg, settings, check_fp32=args.check_fp32,
                                 inference_sizes=sizes, peak_tflops=args.peak_tflops,
                                 profile=args.profile is not None)
        if measured.profile:
            print(measured.profile)
        print(format_markdown(measured))
        result = measured.to_dict()
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == '__main__':
    main()
