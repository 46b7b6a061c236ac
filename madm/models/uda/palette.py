"""Paint label maps with the class palette for LPLR targets (method.md §5.1)."""
import torch
from torch import Tensor


def paint_labels(labels: Tensor, palette: Tensor, ignore_index: int = 255) -> Tensor:
    """Colour a batch of label maps with ``palette`` and scale to [−1, 1].

    Class ``c`` becomes ``palette[c] / 127.5 − 1`` (the reference's
    ``(c/255 − 0.5)/0.5``). Ignored and out-of-range labels become black, −1:
    the reference zero-pads its 256-entry PIL palette (method.md §5.1). Pure
    tensor indexing on the labels' device; the reference's per-image PIL round
    trip on the CPU is not needed.

    Args:
        labels (Tensor): Label maps, shape (N, H, W), integer.
        palette (Tensor): Class colours, shape (C, 3), uint8 or float in 0..255,
            e.g. ``torch.tensor(dataset.metainfo['palette'])``.
        ignore_index (int): Label painted black. Defaults to 255.

    Returns:
        Tensor: RGB images, shape (N, 3, H, W), float32 in [−1, 1].
    """
    if palette.dim() != 2 or palette.shape[1] != 3:
        raise ValueError(f'palette must have shape (C, 3), got {tuple(palette.shape)}.')
    num_classes = palette.shape[0]
    colours = palette.to(labels.device, torch.float32) / 127.5 - 1.0
    # Extra last row = black, looked up by every label that is not a valid class.
    lut = torch.cat([colours, colours.new_full((1, 3), -1.0)])
    invalid = (labels < 0) | (labels >= num_classes) | (labels == ignore_index)
    index = torch.where(invalid, torch.full_like(labels, num_classes), labels).long()
    return lut[index].permute(0, 3, 1, 2).contiguous()
