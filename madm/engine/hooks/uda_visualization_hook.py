import numpy as np
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import Tensor

# Panel tiles, left to right; a tile whose tensor the model did not keep is skipped.
_IMAGE_TILES = ('source', 'target', 'mixed')
_LABEL_TILES = ('source_label', 'pseudo_label', 'mixed_label')
_DECODED_TILES = ('teacher_decoded', 'source_decoded')


@HOOKS.register_module()
class UDAVisualizationHook(Hook):
    """Every ``interval`` iterations, write one panel of what the adaptation sees.

    Tiles (first image of the batch): source, target and mixed image; source label,
    pseudo-label (the teacher's prediction, DPLG-noised for MADM) and mixed label,
    painted with the dataset palette; the VAE decode of the teacher's and of the
    student's source UNet output (what LPLR trains to look like the painted label).
    Images go through the runner's visualizer, so every configured backend
    (local files, TensorBoard, W&B) receives them as ``uda_panel``.

    The hook asks the segmentor to keep detached tensors only on the iterations
    it draws, so other iterations pay nothing.

    Args:
        interval (int): Draw every ``interval`` iterations. Defaults to 250
            (the reference's visualisation period).
        tile_size (int | None): Height of each tile in pixels; None keeps the
            input size. Defaults to 256.
    """

    priority = 'NORMAL'

    def __init__(self, interval: int = 250, tile_size: int | None = 256) -> None:
        if interval <= 0:
            raise ValueError(f'interval must be positive, got {interval}')
        self.interval = interval
        self.tile_size = tile_size

    @staticmethod
    def _segmentor(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = self._segmentor(runner)
        if hasattr(model, 'keep_debug_outputs'):
            model.keep_debug_outputs = self.every_n_train_iters(runner, self.interval)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = self._segmentor(runner)
        if not getattr(model, 'keep_debug_outputs', False):
            return
        model.keep_debug_outputs = False
        debug, model.debug_outputs = model.debug_outputs, {}
        if not debug:
            return
        palette = np.asarray(runner.train_dataloader.dataset.metainfo['palette'], np.uint8)
        panel = make_panel(debug, palette, self.tile_size)
        runner.visualizer.add_image('uda_panel', panel, step=runner.iter + 1)


def make_panel(debug: dict[str, Tensor], palette: np.ndarray, tile_size: int | None) -> np.ndarray:
    """Concatenate the available tiles of the first image horizontally (RGB uint8)."""
    tiles = []
    for key in _IMAGE_TILES:
        if key in debug:
            tiles.append(_resize(debug[key][0].float().clamp(0, 1), tile_size))
    for key in _LABEL_TILES:
        if key in debug:
            tiles.append(_resize(_paint(debug[key][0], palette), tile_size, nearest=True))
    for key in _DECODED_TILES:
        if debug.get(key) is not None:
            tiles.append(_resize((debug[key][0].float().clamp(-1, 1) + 1) / 2, tile_size))
    panel = torch.cat(tiles, dim=2)  # (3, H, sum W)
    return (panel.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def _paint(label: Tensor, palette: np.ndarray) -> Tensor:
    lut = torch.zeros(256, 3)
    lut[:len(palette)] = torch.from_numpy(palette.astype(np.float32)) / 255
    return lut[label.long().cpu().clamp(0, 255)].permute(2, 0, 1)


def _resize(img: Tensor, tile_size: int | None, nearest: bool = False) -> Tensor:
    img = img.cpu()
    if tile_size is None or img.shape[1] == tile_size:
        return img
    width = round(img.shape[2] * tile_size / img.shape[1])
    mode = 'nearest' if nearest else 'bilinear'
    return F.interpolate(img[None], size=(tile_size, width), mode=mode,
                         **({} if nearest else {'align_corners': False}))[0]
