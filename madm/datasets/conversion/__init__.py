"""Offline converters that turn public datasets into the layouts madm reads."""
# Shared by the Cityscapes / DELIVER / FMB converters; submodules are imported by
# their CLIs (data_converters/*.py), not here, so this package stays cheap to import.
import os.path as osp  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
from mmengine.logging import print_log  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402


class ConversionError(RuntimeError):
    """Some inputs could not be converted; the message names each file and the fix."""


@dataclass
class ConversionJob:
    """One input file and the outputs made from it.

    Attributes:
        src (str): Input path.
        outputs (dict[str, Callable[[np.ndarray], np.ndarray]]): Output path ->
            function turning the decoded input into the array to write.
    """
    src: str
    outputs: dict[str, Callable[[np.ndarray], np.ndarray]]


@dataclass
class ConversionSummary:
    """Counts of a converter run.

    Attributes:
        written (int): Output files written.
        skipped (int): Output files that already existed (resumed run).
        failed (list[str]): One message per input that could not be converted.
    """
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f'written {self.written}, skipped {self.skipped}, failed {len(self.failed)}'


def run_conversion(jobs: Sequence[ConversionJob], read: Callable[[str], np.ndarray],
                   write: Callable[[str, np.ndarray], None], name: str,
                   show_progress: bool = True) -> ConversionSummary:
    """Run jobs resumably: skip existing outputs, write new ones atomically.

    Every output of a job is computed before the first is written, so a bad input
    leaves nothing behind; the failures are collected and raised together at the end.

    Args:
        jobs (Sequence[ConversionJob]): Work items.
        read (Callable[[str], np.ndarray]): Decodes an input (raises on bad files).
        write (Callable[[str, np.ndarray], None]): Atomic writer.
        name (str): Converter name for the log.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        ConversionSummary: The counts; raises :class:`ConversionError` after
        logging the summary if any input failed.
    """
    summary = ConversionSummary()
    bar = ProgressBar(len(jobs)) if show_progress and jobs else None
    for job in jobs:
        todo = {dst: fn for dst, fn in job.outputs.items() if not osp.isfile(dst)}
        summary.skipped += len(job.outputs) - len(todo)
        if todo:
            try:
                array = read(job.src)
                results = {dst: fn(array) for dst, fn in todo.items()}
            except (OSError, ValueError) as e:
                summary.failed.append(f'{job.src}: {e}')
            else:
                for dst, out in results.items():
                    write(dst, out)
                summary.written += len(results)
        if bar is not None:
            bar.update()
    print_log(f'{name}: {summary}', logger='current')
    if summary.failed:
        shown = '\n  '.join(summary.failed[:10])
        more = f'\n  ... and {len(summary.failed) - 10} more' if len(summary.failed) > 10 else ''
        raise ConversionError(
            f'{name}: {len(summary.failed)} input file(s) could not be converted ({summary}):\n  '
            f'{shown}{more}\nReplace or delete the bad inputs and re-run; finished outputs are '
            'kept and skipped.')
    return summary

