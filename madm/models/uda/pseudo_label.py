"""Teacher pseudo-labels and their confidence weight (method.md §1 step 6, §6)."""
from typing import Literal

import torch
from torch import Tensor


def confident_share(max_prob: Tensor, threshold: float = 0.968) -> Tensor:
    """Return, per image, the share of pixels whose max softmax probability is ≥ ``threshold``.

    This is the reference's ``q`` (method.md §6). It stays on the device, so
    the segmentor can log it (e.g. as ``tgt.pseudo_conf``) without a host sync.

    Args:
        max_prob (Tensor): Per-pixel max class probability, shape (N, H, W).
        threshold (float): Confidence threshold. Defaults to 0.968.

    Returns:
        Tensor: Float shares in [0, 1], shape (N,).
    """
    return (max_prob >= threshold).float().mean(dim=(1, 2))


def pseudo_label_and_weight(logits: Tensor,
                            threshold: float = 0.968,
                            mode: Literal['image', 'pixel'] = 'image',
                            ignore_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Turn teacher logits into a hard pseudo-label and a confidence weight.

    softmax → argmax gives the label. The weight is, with ``mode='image'``,
    the share ``q`` of confident pixels (:func:`confident_share`) broadcast
    over each image; with ``mode='pixel'``, ``float(max_prob ≥ threshold)``
    per pixel.

    Note: the reference computes ONE scalar ``q`` over the whole per-GPU batch,
    which holds a single image (method.md §6). ``'image'`` computes one ``q``
    per image, the batch-size-independent generalisation: identical at batch
    1, and with batch > 1 a bad image does not drag the others' weight down.

    Args:
        logits (Tensor): Teacher logits, shape (N, C, H, W). Detached here.
        threshold (float): Confidence threshold. Defaults to 0.968
            (method.md §7).
        mode (Literal['image', 'pixel']): Weight granularity. Reference:
            ``'image'`` (method.md §6). Defaults to 'image'.
        ignore_mask (Tensor | None): Bool, shape (N, H, W); True pixels get
            weight 0 after ``q`` was computed over all pixels (as DACS's
            ``psweight_ignore_top/bottom``). Defaults to None (MADM has no
            such masking, ``pl_crop=False``).

    Returns:
        tuple[Tensor, Tensor]: ``(label, weight)``: label long of shape
        (N, H, W) and weight float of shape (N, H, W).
    """
    if logits.dim() != 4:
        raise ValueError(f'pseudo_label_and_weight expects logits (N, C, H, W), got {tuple(logits.shape)}.')
    # float32 softmax: under fp16 autocast, probabilities near 0.968 must not round across it.
    probs = torch.softmax(logits.detach().float(), dim=1)
    max_prob, label = probs.max(dim=1)
    if mode == 'image':
        weight = confident_share(max_prob, threshold)[:, None, None].expand_as(max_prob).clone()
    elif mode == 'pixel':
        weight = (max_prob >= threshold).float()
    else:
        raise ValueError(f"mode must be 'image' or 'pixel', got {mode!r}.")
    if ignore_mask is not None:
        weight = weight.masked_fill(ignore_mask.to(weight.device, torch.bool), 0.0)
    return label, weight
