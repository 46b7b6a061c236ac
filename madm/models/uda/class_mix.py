"""DACS ClassMix: paste half of the source classes onto the target (method.md §1 step 4, §7)."""
import math
from typing import Literal

import torch
from torch import Tensor


def class_mix_mask(label: Tensor, candidate_classes: Tensor, generator: torch.Generator) -> Tensor:
    """Choose ``ceil(n / 2)`` of the ``n`` candidate classes and mask their pixels in ``label``.

    Args:
        label (Tensor): Source label map, shape (H, W), integer.
        candidate_classes (Tensor): 1-D tensor of the ``n`` class ids to choose
            from. The caller decides the scope (batch-wide in the reference,
            method.md §7; per image as an alternative).
        generator (torch.Generator): Source of randomness for the choice
            (``torch.randperm`` on the generator's device).

    Returns:
        Tensor: Bool mask, shape (H, W); True where ``label`` is a chosen class
        (i.e. where source pixels are pasted). All False if ``n == 0``.
    """
    num_classes = candidate_classes.numel()
    num_chosen = math.ceil(num_classes / 2)
    perm = torch.randperm(num_classes, generator=generator, device=generator.device)
    chosen = candidate_classes[perm[:num_chosen].to(candidate_classes.device)]
    return torch.isin(label, chosen.to(label.device, label.dtype))


def class_mix_masks(labels: Tensor,
                    generator: torch.Generator,
                    ignore_index: int = 255,
                    scope: Literal['batch', 'image'] = 'batch',
                    include_ignore: bool = True) -> Tensor:
    """Build one ClassMix mask per source image of a batch.

    For every image ``i``, ``ceil(n / 2)`` of the ``n`` candidate classes are
    chosen with ``randperm(generator)`` and the mask is
    ``isin(labels[i], chosen)`` (DACS ``get_class_masks``).

    Args:
        labels (Tensor): Source labels, shape (N, H, W), long.
        generator (torch.Generator): Source of randomness; one permutation is
            drawn per image, in batch order.
        ignore_index (int): Label of ignored pixels. Defaults to 255.
        scope (Literal['batch', 'image']): Where the candidate classes come
            from. ``'batch'`` takes the unique labels of the whole batch for
            every image; ``'image'`` takes each image's own unique labels.
            Reference: ``'batch'`` — DACS/MADM call ``torch.unique(labels)`` on
            the whole per-GPU batch inside the per-image loop (method.md §7,
            §11.15). With one image per GPU both scopes coincide.
            Defaults to 'batch'.
        include_ignore (bool): Whether ``ignore_index`` may be chosen, so that
            ignored source pixels are pasted too. Reference: True — the unique
            set includes 255 when it occurs (method.md §1 step 4, §11.15).
            Defaults to True.

    Returns:
        Tensor: Bool masks, shape (N, H, W); True = take the source pixel.
    """
    if labels.dim() != 3:
        raise ValueError(f'class_mix_masks expects labels of shape (N, H, W), got {tuple(labels.shape)}.')
    if scope not in ('batch', 'image'):
        raise ValueError(f"scope must be 'batch' or 'image', got {scope!r}.")

    def candidates(label: Tensor) -> Tensor:
        classes = torch.unique(label)  # sorted, so a seeded generator gives a reproducible choice
        if not include_ignore:
            classes = classes[classes != ignore_index]
        return classes

    batch_classes = candidates(labels) if scope == 'batch' else None
    masks = [
        class_mix_mask(label, batch_classes if scope == 'batch' else candidates(label), generator)
        for label in labels
    ]
    return torch.stack(masks)


def mix(mask: Tensor, src: Tensor, tgt: Tensor) -> Tensor:
    """Take ``src`` where ``mask`` is True and ``tgt`` elsewhere (DACS ``one_mix``).

    The same mask serves images, labels and pixel weights, so all three stay
    aligned (method.md §1 steps 4 and 7).

    Args:
        mask (Tensor): Bool mask, shape (N, H, W).
        src (Tensor): Source tensor, shape (N, C, H, W) for images or
            (N, H, W) for labels / weights.
        tgt (Tensor): Target tensor, same shape as ``src`` (or broadcastable
            to it, e.g. a scalar weight).

    Returns:
        Tensor: The mixed tensor, shape of ``src``.
    """
    if mask.dim() != 3:
        raise ValueError(f'mix expects a mask of shape (N, H, W), got {tuple(mask.shape)}.')
    if src.dim() == 4:
        mask = mask.unsqueeze(1)
    elif src.dim() != 3:
        raise ValueError(f'mix expects src of shape (N, C, H, W) or (N, H, W), got {tuple(src.shape)}.')
    return torch.where(mask, src, tgt)
