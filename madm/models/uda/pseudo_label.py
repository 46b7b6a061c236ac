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


def class_balanced_selection(max_prob: Tensor, label: Tensor, keep_share: float) -> Tensor:
    """Keep, for every predicted class, its ``keep_share`` most confident pixels.

    CBST's rule (Zou et al., ECCV 2018), over the batch: each class gets its own confidence
    threshold, the value ranked at ``keep_share`` of the pixels predicted as that class. A
    class the teacher predicts everywhere with middling confidence then cannot fill the
    pseudo-labels, and a rare, less confident class still contributes. Ties at the threshold
    are broken by pixel order. Runs without a host synchronisation.

    Args:
        max_prob (Tensor): Per-pixel max class probability, shape (N, H, W).
        label (Tensor): Per-pixel argmax class, long, shape (N, H, W).
        keep_share (float): Share of each class's pixels to keep, in (0, 1].

    Returns:
        Tensor: Bool mask of the kept pixels, shape (N, H, W).
    """
    if not 0.0 < keep_share <= 1.0:
        raise ValueError(f'keep_share must be in (0, 1], got {keep_share}')
    flat_label = label.reshape(-1)
    # one sort orders pixels by class, then by falling confidence (max_prob is in [0, 1])
    order = torch.argsort(flat_label.double() * 2.0 - max_prob.reshape(-1).double(),
                          stable=True)
    counts = torch.bincount(flat_label)
    starts = torch.cumsum(counts, 0) - counts
    sorted_label = flat_label[order]
    rank = torch.arange(flat_label.numel(), device=label.device) - starts[sorted_label]
    kept_sorted = rank < torch.ceil(keep_share * counts[sorted_label].double())
    kept = torch.empty_like(kept_sorted)
    kept[order] = kept_sorted
    return kept.view_as(label)


def pseudo_label_and_weight(logits: Tensor,
                            threshold: float = 0.968,
                            mode: Literal['image', 'pixel', 'class_balanced'] = 'image',
                            ignore_mask: Tensor | None = None,
                            class_keep_share: float = 0.5) -> tuple[Tensor, Tensor]:
    """Turn teacher logits into a hard pseudo-label and a confidence weight.

    softmax → argmax gives the label. The weight is, with ``mode='image'``,
    the share ``q`` of confident pixels (:func:`confident_share`) broadcast
    over each image; with ``mode='pixel'``, ``float(max_prob ≥ threshold)``
    per pixel; with ``mode='class_balanced'`` (not in MADM), 1 on the pixels
    :func:`class_balanced_selection` keeps and 0 elsewhere (``threshold`` unused).

    Note: the reference computes ONE scalar ``q`` over the whole per-GPU batch,
    which holds a single image (method.md §6). ``'image'`` computes one ``q``
    per image, the batch-size-independent generalisation: identical at batch
    1, and with batch > 1 a bad image does not drag the others' weight down.

    Args:
        logits (Tensor): Teacher logits, shape (N, C, H, W). Detached here.
        threshold (float): Confidence threshold. Defaults to 0.968
            (method.md §7).
        mode (Literal['image', 'pixel', 'class_balanced']): Weight rule.
            Reference: ``'image'`` (method.md §6). Defaults to 'image'.
        ignore_mask (Tensor | None): Bool, shape (N, H, W); True pixels get
            weight 0 after ``q`` was computed over all pixels (as DACS's
            ``psweight_ignore_top/bottom``). Defaults to None (MADM has no
            such masking, ``pl_crop=False``).
        class_keep_share (float): Share of each class's pixels kept by
            ``mode='class_balanced'``. Defaults to 0.5.

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
    elif mode == 'class_balanced':
        weight = class_balanced_selection(max_prob, label, class_keep_share).float()
    else:
        raise ValueError(f"mode must be 'image', 'pixel' or 'class_balanced', got {mode!r}.")
    if ignore_mask is not None:
        weight = weight.masked_fill(ignore_mask.to(weight.device, torch.bool), 0.0)
    return label, weight
