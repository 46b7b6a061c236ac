"""Run PyTorch's CUDA autocast test lists on meta under EmulatedCUDAAutocast; print JSON.

Used by test_meta_memory.py in a subprocess: ``torch.testing._internal`` (which needs the
``expecttest`` package) freezes ``torch.backends`` flags when imported.

    python tests/test_utils/autocast_lists_check.py bfloat16
"""
import json
import sys

import torch
from torch.testing._internal.autocast_test_lists import AutocastTestLists

from madm.utils.meta_memory import EmulatedCUDAAutocast


def autocast_cases() -> list[tuple[str, object, tuple, torch.dtype]]:
    """(name, callable, args, CUDA's output dtype with fp16 autocast) of each list entry."""
    lists = AutocastTestLists(torch.device('meta'))
    cases = []
    for op, *rest in lists.torch_fp16:
        # einsum's entry is (name, equation, operands); the others (name, args[, skip])
        args = (rest[0], *rest[1]) if isinstance(rest[0], str) else rest[0]
        cases.append((op, getattr(torch, op), args, torch.float16))
    for op, args, *_ in lists.torch_fp32:
        cases.append((op, getattr(torch, op), args, torch.float32))
    for op, args in lists.torch_need_autocast_promote:
        cases.append((op, getattr(torch, op), args, torch.float32))
    for op, args in lists.nn_fp16:
        cases.append((op, getattr(torch._C._nn, op), args, torch.float16))
    for op, args in lists.nn_fp32:
        cases.append((op, getattr(torch._C._nn, op), args, torch.float32))
    for op, args in lists.linalg_fp16:
        cases.append((op, getattr(torch._C._linalg, op), args, torch.float16))
    for entries, expected in ((lists.methods_fp16, torch.float16),
                              (lists.methods_fp32, torch.float32)):
        for op, args in entries:
            cases.append((op, lambda *a, _op=op: getattr(a[0], _op)(*a[1:]), args, expected))
    return cases


def check(dtype: torch.dtype) -> dict:
    cases = autocast_cases()
    checked, failed, wrong = 0, {}, []
    for name, fn, args, expected in cases:
        with EmulatedCUDAAutocast(dtype):
            try:
                out = fn(*args)
            except (NotImplementedError, RuntimeError) as error:
                failed[name] = str(error).splitlines()[0]
                continue
        first = out if isinstance(out, torch.Tensor) else out[0]
        want = dtype if expected == torch.float16 else expected
        if first.dtype != want:
            wrong.append([name, str(first.dtype), str(want)])
        checked += 1
    return dict(cases=len(cases), checked=checked, failed=failed, wrong_dtype=wrong)


if __name__ == '__main__':
    print(json.dumps(check(getattr(torch, sys.argv[1]))))
