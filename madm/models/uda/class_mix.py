"""DACS ClassMix: paste half of the source classes onto the target (method.md §1 step 4, §7)."""
import math
from typing import Literal

import torch
from torch import Tensor

from madm.models.utils import to_device_async


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
                    include_ignore: bool = True,
                    on_device: bool = False,
                    num_classes: int | None = None) -> Tensor:
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
        on_device (bool): Choose with :func:`class_mix_masks_on_device` (fixed-size
            random keys, no host synchronisation; same distribution, another random
            stream) instead of ``torch.unique`` and ``randperm`` (the reference's way,
            which makes the host wait for a GPU ``1 + N`` times per call with the
            ``'batch'`` scope and ``2N`` times with ``'image'``). Not in MADM.
            Defaults to False.
        num_classes (int | None): Classes of the labels; needed by ``on_device``.

    Returns:
        Tensor: Bool masks, shape (N, H, W); True = take the source pixel.
    """
    if labels.dim() != 3:
        raise ValueError(f'class_mix_masks expects labels of shape (N, H, W), got {tuple(labels.shape)}.')
    if scope not in ('batch', 'image'):
        raise ValueError(f"scope must be 'batch' or 'image', got {scope!r}.")
    if on_device:
        if num_classes is None:
            raise ValueError('class_mix_masks(on_device=True) needs num_classes.')
        return class_mix_masks_on_device(labels, generator, num_classes, ignore_index=ignore_index,
                                         scope=scope, include_ignore=include_ignore)

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


def class_mix_masks_on_device(labels: Tensor,
                              generator: torch.Generator,
                              num_classes: int,
                              ignore_index: int = 255,
                              scope: Literal['batch', 'image'] = 'batch',
                              include_ignore: bool = True) -> Tensor:
    """:func:`class_mix_masks` without a host synchronisation (not in MADM).

    The reference needs the number of classes present on the host (``torch.unique``,
    then ``randperm(n)``). Here every class id (and ``ignore_index``, as one more slot)
    gets a random key, drawn on the generator's device in a fixed shape ``(N, C + 1)``
    and copied without waiting; the present classes are ranked by key on the device and
    the ``ceil(n / 2)`` lowest are chosen. That is a uniformly random half of the present
    classes, as ``randperm`` gives, from another random stream.

    Args:
        labels (Tensor): Source labels, shape (N, H, W), long, with values in
            ``[0, num_classes)`` or ``ignore_index``. Another value raises, on a GPU as
            a device-side assert (an asynchronous check, so no host wait); the reference's
            way would instead paste it as one more class.
        generator (torch.Generator): Source of the keys: ``N × (C + 1)`` uniform draws a
            call.
        num_classes (int): ``C``.
        ignore_index (int): Label of ignored pixels. Defaults to 255.
        scope (Literal['batch', 'image']): See :func:`class_mix_masks`. Defaults to 'batch'.
        include_ignore (bool): See :func:`class_mix_masks`. Defaults to True.

    Returns:
        Tensor: Bool masks, shape (N, H, W); True = take the source pixel.
    """
    n = labels.shape[0]
    is_ignored = labels == ignore_index
    torch._assert_async(((labels >= 0) & (labels < num_classes) | is_ignored).all(),
                        f'ClassMix labels must lie in [0, {num_classes}) or be {ignore_index}')
    slots = torch.where(is_ignored, num_classes, labels).flatten(1)  # (N, H·W)
    present = torch.zeros(n, num_classes + 1, dtype=torch.bool, device=labels.device)
    present.scatter_(1, slots, True)
    if scope == 'batch':
        present = present.any(dim=0, keepdim=True).expand(n, -1)
    if not include_ignore:
        present = present & (torch.arange(num_classes + 1, device=labels.device) < num_classes)
    keys = torch.rand(n, num_classes + 1, generator=generator, device=generator.device)
    keys = torch.where(present, to_device_async(keys, labels.device), 2.0)  # absent: last
    rank = keys.argsort(dim=1).argsort(dim=1)
    num_chosen = (present.sum(dim=1, keepdim=True) + 1) // 2  # ceil(n / 2)
    chosen = present & (rank < num_chosen)
    return chosen.gather(1, slots).view_as(labels)


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
