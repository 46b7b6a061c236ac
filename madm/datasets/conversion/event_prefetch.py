"""Read DSEC label windows one ahead of the caller, in a child process.

Decoding ``events.h5`` (HDF5 + Blosc/ZSTD through h5py) holds the GIL, so a reader thread
cannot overlap it with rendering (measured, docs/benchmarks.md). :func:`read_windows` forks
one reader process that decodes window ``k + 1`` into shared memory while the caller renders
window ``k``: the converter's wall time per window becomes about max(decode, render) instead
of their sum, for every backend alike.

Two slots of shared memory, each sized for the largest window (known from ``ms_to_idx``
before anything is decoded), hold the events; two pipes pass slot numbers back and forth.
Memory stays bounded by the largest window, as without prefetching.
"""
import mmap
import multiprocessing as mp
import traceback
from collections.abc import Iterator, Sequence

import numpy as np

#: dtype of each event field as :meth:`DSECEventReader.read` returns it.
FIELD_DTYPES = {'x': np.uint16, 'y': np.uint16, 't': np.int64, 'p': np.uint8}
_NUM_SLOTS = 2


def _slot_layout(columns: str, capacity: int) -> tuple[dict[str, int], int]:
    """Byte offset of each field in a slot for ``capacity`` events, and the slot size."""
    offsets, size = {}, 0
    for key in sorted(columns, key=lambda k: -np.dtype(FIELD_DTYPES[k]).itemsize):
        offsets[key] = size
        size += capacity * np.dtype(FIELD_DTYPES[key]).itemsize
    return offsets, max(size, 1)


def _views(slot: mmap.mmap, offsets: dict[str, int], count: int) -> dict[str, np.ndarray]:
    return {key: np.frombuffer(slot, FIELD_DTYPES[key], count, offsets[key])
            for key in 'xytp' if key in offsets}


def _reader_loop(path: str, windows: Sequence[tuple[int, int]], columns: str,
                 slots: list[mmap.mmap], offsets: dict[str, int], capacity: int,
                 free, ready) -> None:
    """Child: decode each window into the slot the parent hands back, report its size."""
    from .dsec_events import DSECEventReader
    try:
        buffers = [_views(slot, offsets, capacity) for slot in slots]
        with DSECEventReader(path) as reader:
            for k, (t_start, t_end) in enumerate(windows):
                slot = free.recv()
                if slot is None:  # the parent stopped early
                    return
                # HDF5 decodes straight into the shared slot: no event array is copied
                count = reader.read_into(t_start, t_end, buffers[slot], columns)
                ready.send((k, slot, -1 if count is None else count))
    except BaseException:  # noqa: B902  reported to the parent, which raises it
        ready.send(('error', traceback.format_exc()))


def can_prefetch() -> bool:
    """Whether this platform can fork the reader process (Linux, macOS)."""
    return 'fork' in mp.get_all_start_methods()


def read_windows(path: str, windows: Sequence[tuple[int, int]], columns: str = 'xytp',
                 prefetch: bool = True) -> Iterator[dict[str, np.ndarray] | None]:
    """Events of each ``[t_start, t_end)`` window in order (:meth:`DSECEventReader.read`).

    Args:
        path (str): ``events.h5``.
        windows (Sequence[tuple[int, int]]): Absolute µs windows.
        columns (str): Fields to read, a subset of ``'xytp'``.
        prefetch (bool): Decode the next window in a forked child process while the
            caller works on this one. Without fork support it reads in this process.
            Defaults to True.

    Yields:
        dict[str, np.ndarray] | None: The window's fields, or None outside the
        recording. With prefetching the arrays are views of shared memory, valid until
        the next window is requested: copy what must outlive the iteration.

    Raises:
        RuntimeError: If the reader process fails (with its traceback) or dies.
    """
    from .dsec_events import DSECEventReader  # dsec_events imports this module
    windows = list(windows)
    columns = ''.join(key for key in 'xytp' if key in columns)
    if not columns:
        raise ValueError("columns must name at least one of the fields 'x', 'y', 't', 'p'.")
    with DSECEventReader(path) as reader:  # checks the file and the Blosc plugin here
        capacity = reader.max_window_events(windows)
        if not (prefetch and can_prefetch()) or len(windows) < 2:
            for t_start, t_end in windows:
                yield reader.read(t_start, t_end, columns)
            return
    offsets, size = _slot_layout(columns, capacity)
    # anonymous shared mappings made before the fork are shared with the child
    slots = [mmap.mmap(-1, size) for _ in range(_NUM_SLOTS)]
    ctx = mp.get_context('fork')
    free_out, free_in = ctx.Pipe(duplex=False)
    ready_out, ready_in = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_reader_loop, daemon=True, name='dsec-event-reader',
                          args=(path, windows, columns, slots, offsets, capacity, free_out,
                                ready_in))
    process.start()
    # only the child writes `ready` and reads `free`: a dead child then reads as EOF here
    ready_in.close()
    free_out.close()
    try:
        for slot in range(_NUM_SLOTS):
            free_in.send(slot)
        for k in range(len(windows)):
            try:
                message = ready_out.recv()
            except EOFError:
                process.join()
                raise RuntimeError(f'The event reader process for {path!r} died (exit code '
                                   f'{process.exitcode}) at window {k}.') from None
            if message[0] == 'error':
                raise RuntimeError(f'Reading {path!r} failed in the reader process:\n'
                                   f'{message[1]}')
            _, slot, count = message
            yield None if count < 0 else _views(slots[slot], offsets, count)
            if k + _NUM_SLOTS < len(windows):  # the child still has windows to read
                free_in.send(slot)
    finally:
        try:
            free_in.send(None)
        except OSError:
            pass  # the child is gone already
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join()
        free_in.close()
        ready_out.close()
        for slot in slots:
            try:
                slot.close()
            except BufferError:
                pass  # the caller still holds views; the mapping goes with the last one
