"""Inference on raw images, image folders and DSEC event recordings (``tools/infer.py``).

A config's test pipeline is written for a labelled test set: it loads a label map,
remaps it, and (for the reference protocol, method.md §8.4) squashes image *and*
label to 512x512 and scores there. Inference keeps the image steps of that
pipeline and changes three things (:func:`inference_pipeline`):

* the label steps (``LoadAnnotations``, ``LoadLabelMap``, ``MapLabels``) are dropped;
* ``ReferenceEvalResize`` becomes ``Resize(keep_ratio=False)`` to the same size, so the
  model still sees a 512x512 input but the prediction is resized back to the input's
  own size (the "native" protocol of the dataset configs);
* for arrays (event frames rendered on the fly) the loading step becomes
  ``LoadImageFromNDArray``; files keep the config's loader (``LoadModalityImage``
  replicates gray images to 3 channels and crops DSEC frames to 440 rows).

DSEC ``events.h5`` recordings are rendered with the converter's own code
(:mod:`madm.datasets.conversion.dsec_events`): ``rectify_map.h5`` beside the events
file, rows cut to the 640x440 label frame, and either the label windows of a
semantic-timestamps file (``[ts[i-1], ts[i])`` for ``i >= 1``, the frames MADM was
trained on) or fixed windows of ``window_ms`` from the recording's start.
"""
import copy
import math
import os
import os.path as osp
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.utils import ProgressBar
from mmseg.registry import DATASETS, MODELS

from madm.utils import MissingDataError, atomic_write_image

Representation = Literal['edge', 'histogram', 'voxel']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
#: Steps that read or remap labels; inference has none.
LABEL_STEPS = frozenset({'LoadAnnotations', 'LoadLabelMap', 'MapLabels'})
#: First steps of a test pipeline that load the image.
LOADING_STEPS = frozenset({'LoadImageFromFile', 'LoadModalityImage', 'LoadImageFromNDArray'})


# ---------------------------------------------------------------------- model
def _dataset_meta_from_config(cfg: Config) -> dict | None:
    """Classes and palette of the config's test set: its ``metainfo``, else its class's."""
    dataset_cfg = cfg.get('test_dataloader', {}).get('dataset', {})
    metainfo = dataset_cfg.get('metainfo')
    if metainfo and metainfo.get('classes') and metainfo.get('palette'):
        return dict(classes=tuple(metainfo['classes']),
                    palette=[list(c) for c in metainfo['palette']])
    dataset_type = dataset_cfg.get('type')
    dataset_cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else None
    class_meta = getattr(dataset_cls, 'METAINFO', {}) if dataset_cls is not None else {}
    if class_meta.get('classes') and class_meta.get('palette'):
        return dict(classes=tuple(class_meta['classes']),
                    palette=[list(c) for c in class_meta['palette']])
    return None


def load_segmentor(config: str | Config, checkpoint: str | None, device: str = 'cpu',
                   cfg_options: dict | None = None) -> torch.nn.Module:
    """Build a segmentor from a config and load a checkpoint, ready for inference.

    Like ``mmseg.apis.init_model``, but it also accepts a bare ``state_dict``
    checkpoint and takes classes and palette from the config when the checkpoint
    has no ``meta['dataset_meta']``. The checkpoint is read with torch's default
    ``weights_only=True`` (madm checkpoints are saved weights-only compatible).

    Args:
        config (str | Config): Config file or object.
        checkpoint (str | None): Checkpoint file; None keeps the initial weights.
        device (str): Torch device. Defaults to 'cpu'.
        cfg_options (dict | None): Overrides merged into the config. Defaults to None.

    Returns:
        torch.nn.Module: The segmentor in eval mode on ``device``, with ``cfg``
        (the merged config) and ``dataset_meta`` (``classes``, ``palette``) set.

    Raises:
        MissingDataError: If ``checkpoint`` does not exist.
        ValueError: If neither the checkpoint nor the config names the classes.
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise MissingDataError(f'Checkpoint not found: {checkpoint!r}. Pass the .pth file '
                               'written by tools/train.py (e.g. <work_dir>/iter_10000.pth).')
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.train_cfg = None
    model = MODELS.build(model_cfg)
    meta = None
    if checkpoint is not None:
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
        meta = ckpt.get('meta', {}).get('dataset_meta') if isinstance(ckpt, dict) else None
    meta = meta or _dataset_meta_from_config(cfg)
    if meta is None:
        raise ValueError('Cannot tell the class names and palette: the checkpoint has no '
                         "meta['dataset_meta'] and the config's test_dataloader.dataset has "
                         'no metainfo. Add metainfo=dict(classes=..., palette=...) to it.')
    num_classes = model.decode_head.num_classes
    if len(meta['palette']) != num_classes:
        raise ValueError(f'The model predicts {num_classes} classes but the palette has '
                         f'{len(meta["palette"])} colours; check the config / checkpoint pair.')
    model.dataset_meta = dict(classes=tuple(meta['classes']),
                              palette=[list(c) for c in meta['palette']])
    model.cfg = cfg
    model.to(device)
    model.eval()
    return model


# ---------------------------------------------------------------------- pipeline
def inference_pipeline(test_pipeline: Sequence[dict],
                       from_array: bool) -> tuple[dict, list[dict]]:
    """Split a test pipeline into its loading step and the label-free image steps.

    Args:
        test_pipeline (Sequence[dict]): The config's ``test_pipeline``.
        from_array (bool): Images come as arrays: load with ``LoadImageFromNDArray``.

    Returns:
        tuple[dict, list[dict]]: The loading step, and the remaining steps without
        label steps and with ``ReferenceEvalResize`` replaced by mmseg's ``Resize``
        (``keep_ratio=False``) to the same scale, so that predictions come back at
        the input's size.

    Raises:
        ValueError: If the pipeline does not start with an image-loading step.
    """
    steps = [copy.deepcopy(dict(step)) for step in test_pipeline]
    if not steps or steps[0].get('type') not in LOADING_STEPS:
        raise ValueError(f'The test pipeline must start with one of {sorted(LOADING_STEPS)}, '
                         f'got {steps[0] if steps else "an empty pipeline"}.')
    loader = dict(type='LoadImageFromNDArray') if from_array else steps[0]
    rest = []
    for step in steps[1:]:
        if step.get('type') in LABEL_STEPS:
            continue
        if step.get('type') == 'ReferenceEvalResize':
            step = dict(type='Resize', scale=tuple(step.get('scale', (512, 512))),
                        keep_ratio=False, backend=step.get('backend', 'pillow'))
        rest.append(step)
    return loader, rest


def colorize_mask(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Paint a label map with the task palette.

    Args:
        label (np.ndarray): ``(H, W)`` integer class ids; ids outside the palette
            (e.g. 255) are painted black.
        palette (Sequence[Sequence[int]]): RGB colour per class.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.
    """
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = np.asarray(palette, np.uint8)
    return table[np.clip(label, 0, 255).astype(np.uint8)]


def overlay_mask(image: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """Blend ``(1 - opacity) * image + opacity * mask``, rounded to uint8.

    Args:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB.
        mask (np.ndarray): ``(H, W, 3)`` uint8 RGB (:func:`colorize_mask`).
        opacity (float): Weight of the mask, in [0, 1].

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f'opacity must be in [0, 1], got {opacity}')
    blend = (1.0 - opacity) * image.astype(np.float32) + opacity * mask.astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


class SegmentorInferencer:
    """Predict label maps for image files or arrays with a loaded segmentor.

    Args:
        model (torch.nn.Module): From :func:`load_segmentor` (``cfg`` and
            ``dataset_meta`` set).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        pipeline = model.cfg.get('test_pipeline') or model.cfg.test_dataloader.dataset.pipeline
        self._pipelines: dict[bool, tuple[Compose, Compose]] = {}
        for from_array in (False, True):
            loader, rest = inference_pipeline(pipeline, from_array)
            self._pipelines[from_array] = (Compose([loader]), Compose(rest))

    @torch.no_grad()
    def __call__(self, image: str | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment one image.

        Args:
            image (str | np.ndarray): A file path, or an ``(H, W, 3)`` uint8 **BGR**
                array (``(H, W)`` gray is replicated).

        Returns:
            tuple[np.ndarray, np.ndarray]: The loaded image ``(H, W, 3)`` uint8 RGB
            (as the model's loader read it, before resizing) and the predicted
            labels ``(H, W)`` int64 at that size.
        """
        from_array = isinstance(image, np.ndarray)
        load, transform = self._pipelines[from_array]
        if from_array:
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            results = load(dict(img=np.ascontiguousarray(image)))
        else:
            results = load(dict(img_path=image))
        loaded_rgb = np.ascontiguousarray(results['img'][..., ::-1])
        packed = transform(results)
        data = dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']])
        sample = self.model.test_step(data)[0]
        label = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.int64)
        return loaded_rgb, label


# ---------------------------------------------------------------------- inputs
def list_images(folder: str) -> list[str]:
    """Image files directly inside ``folder`` (by extension), sorted by name."""
    return sorted(osp.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and osp.isfile(osp.join(folder, f)))


def fixed_windows(t_offset: int, duration_us: int, window_ms: float) -> list[tuple[int, int, int]]:
    """Consecutive ``[t_start, t_end)`` windows covering a recording.

    Args:
        t_offset (int): Absolute µs of the recording's relative time 0.
        duration_us (int): Relative time of the last event + 1.
        window_ms (float): Window length in ms.

    Returns:
        list[tuple[int, int, int]]: ``(k, t_start, t_end)`` for ``k = 0, 1, ...``;
        at least one window.
    """
    if window_ms <= 0:
        raise ValueError(f'window_ms must be positive, got {window_ms}')
    width = int(round(window_ms * 1000))
    count = max(1, math.ceil(duration_us / width))
    return [(k, t_offset + k * width, t_offset + (k + 1) * width) for k in range(count)]


@dataclass
class EventFrames:
    """Event frames rendered from one DSEC ``events.h5``.

    Attributes:
        name (str): Prefix of the output names: the sequence folder for the DSEC
            layout ``<seq>/events/left/events.h5``, else the file's stem.
        windows (list[tuple[int, int, int]]): ``(index, t_start, t_end)``, absolute µs.
    """

    name: str
    windows: list[tuple[int, int, int]]


def event_recording_name(events_path: str) -> str:
    """``<seq>`` for ``.../<seq>/events/left/events.h5``, else the file's stem."""
    parts = osp.normpath(osp.abspath(events_path)).split(os.sep)
    if len(parts) >= 4 and parts[-3:-1] == ['events', 'left']:
        return parts[-4]
    return osp.splitext(osp.basename(events_path))[0]


def plan_event_frames(events_path: str, timestamps_path: str | None = None,
                      window_ms: float = 50.0) -> EventFrames:
    """Choose the event windows of a recording.

    Args:
        events_path (str): DSEC ``events.h5``.
        timestamps_path (str | None): DSEC-Semantic timestamps file; if given, frame
            ``i >= 1`` holds the events of ``[ts[i-1], ts[i])``, as the converter
            writes MADM's frames. Defaults to None.
        window_ms (float): Window length without a timestamps file: consecutive
            windows from the recording's start. Defaults to 50 (the DSEC-Semantic
            label spacing).

    Returns:
        EventFrames: The name prefix and the windows.
    """
    from madm.datasets.conversion.dsec_events import (DSECEventReader, label_windows,
                                                      load_timestamps)
    name = event_recording_name(events_path)
    if timestamps_path is not None:
        if not osp.isfile(timestamps_path):
            raise MissingDataError(f'Timestamps file not found: {timestamps_path!r}. It is '
                                   "DSEC-Semantic's <seq>/<seq>_semantic_timestamps.txt.")
        return EventFrames(name, label_windows(load_timestamps(timestamps_path)))
    with DSECEventReader(events_path) as reader:
        duration = int(reader.events['t'][-1]) + 1 if reader.num_events else 1
        return EventFrames(name, fixed_windows(reader.t_offset, duration, window_ms))


def render_event_frames(events_path: str, frames: EventFrames,
                        representation: Representation = 'edge'
                        ) -> Iterator[tuple[str, np.ndarray]]:
    """Render each window with the DSEC converter's renderer.

    Args:
        events_path (str): DSEC ``events.h5``; ``rectify_map.h5`` must lie beside it.
        frames (EventFrames): From :func:`plan_event_frames`.
        representation (Representation): 'edge' (MADM's frames), 'histogram' or
            'voxel'. Defaults to 'edge'.

    Yields:
        tuple[str, np.ndarray]: ``<name>_<index:06d>`` and the frame, ``(440, 640)``
        (edge) or ``(440, 640, 3)`` uint8; windows outside the recording are blank
        frames, as the converter writes them.
    """
    from madm.datasets.conversion.dsec_events import (DSECEventReader, build_renderer,
                                                      load_rectify_map)
    rectify_path = osp.join(osp.dirname(events_path), 'rectify_map.h5')
    renderer = build_renderer(load_rectify_map(rectify_path), representation)
    empty = dict(x=np.zeros(0, np.int64), y=np.zeros(0, np.int64), t=np.zeros(0, np.int64),
                 p=np.zeros(0, np.uint8))
    with DSECEventReader(events_path) as reader:
        for index, t_start, t_end in frames.windows:
            events = reader.read(t_start, t_end)
            frame = renderer(events if events is not None else empty, t_start, t_end)
            yield f'{frames.name}_{index:06d}', frame


# ---------------------------------------------------------------------- driver
InputKind = Literal['image', 'folder', 'events']


def input_kind(path: str) -> InputKind:
    """Classify ``path``: a folder, a ``.h5`` event recording, or an image file."""
    if osp.isdir(path):
        return 'folder'
    if not osp.isfile(path):
        raise MissingDataError(f'Input not found: {path!r}. Pass an image, a folder of images '
                               'or a DSEC events.h5.')
    if path.lower().endswith('.h5'):
        return 'events'
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return 'image'
    raise ValueError(f'Unsupported input {path!r}: expected an image '
                     f'({", ".join(IMAGE_EXTENSIONS)}), a folder of images or a .h5 file.')


def write_prediction(out_dir: str, name: str, image_rgb: np.ndarray, label: np.ndarray,
                     palette: Sequence[Sequence[int]], opacity: float) -> tuple[str, str]:
    """Write ``<name>_mask.png`` (palette colours) and ``<name>_overlay.png``.

    Returns:
        tuple[str, str]: The mask and overlay paths.
    """
    mask = colorize_mask(label, palette)
    mask_path = osp.join(out_dir, f'{name}_mask.png')
    overlay_path = osp.join(out_dir, f'{name}_overlay.png')
    atomic_write_image(mask_path, mask)
    atomic_write_image(overlay_path, overlay_mask(image_rgb, mask, opacity))
    return mask_path, overlay_path


def run_inference(model: torch.nn.Module, input_path: str, out_dir: str, opacity: float = 0.5,
                  event_representation: Representation = 'edge',
                  timestamps_path: str | None = None, window_ms: float = 50.0,
                  show_progress: bool = True) -> list[str]:
    """Segment an image, a folder of images or a DSEC ``events.h5`` into ``out_dir``.

    Args:
        model (torch.nn.Module): From :func:`load_segmentor`.
        input_path (str): Image file, folder of images, or ``events.h5``.
        out_dir (str): Output folder (created).
        opacity (float): Mask weight in the overlay. Defaults to 0.5.
        event_representation (Representation): Event rendering; use what the model
            was trained on. Defaults to 'edge'.
        timestamps_path (str | None): Semantic timestamps for event windows; see
            :func:`plan_event_frames`. Defaults to None.
        window_ms (float): Fixed event window without timestamps. Defaults to 50.
        show_progress (bool): Show a progress bar. Defaults to True.

    Returns:
        list[str]: The name of every input written (``<name>_mask.png`` and
        ``<name>_overlay.png`` exist for each).
    """
    kind = input_kind(input_path)
    inferencer = SegmentorInferencer(model)
    palette = model.dataset_meta['palette']
    os.makedirs(out_dir, exist_ok=True)

    items: Iterator[tuple[str, str | np.ndarray]]
    if kind == 'events':
        frames = plan_event_frames(input_path, timestamps_path, window_ms)
        total = len(frames.windows)
        items = render_event_frames(input_path, frames, event_representation)
    else:
        paths = [input_path] if kind == 'image' else list_images(input_path)
        if not paths:
            raise MissingDataError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in {input_path!r}.')
        total = len(paths)
        items = ((osp.splitext(osp.basename(p))[0], p) for p in paths)

    bar = ProgressBar(total) if show_progress else None
    names = []
    for name, image in items:
        # Event frames are gray or RGB; the array loader expects OpenCV's BGR order.
        if isinstance(image, np.ndarray) and image.ndim == 3:
            image = np.ascontiguousarray(image[..., ::-1])
        loaded_rgb, label = inferencer(image)
        write_prediction(out_dir, name, loaded_rgb, label, palette, opacity)
        names.append(name)
        if bar is not None:
            bar.update()
    print_log(f'Wrote {len(names)} mask/overlay pairs to {out_dir}', logger='current')
    return names
