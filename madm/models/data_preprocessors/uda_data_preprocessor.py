"""Data preprocessor for paired source/target UDA batches (method.md §1 step 2)."""
from typing import Any

import torch
from mmengine.structures import BaseDataElement
from mmseg.models.data_preprocessor import SegDataPreProcessor
from mmseg.registry import MODELS

_BRANCHES = ('source', 'target')


def pinned(data: Any) -> Any:
    """``data`` with every tensor in pinned memory, data elements' fields included.

    ``DataLoader(pin_memory=True)`` pins tensors and containers of them, but not the labels
    inside mmseg's data samples, which have no ``pin_memory`` method. Tensors already pinned
    or not on the host are kept; data elements are new ones with copies of their metainfo.
    """
    if isinstance(data, torch.Tensor):
        return data if data.device.type != 'cpu' or data.is_pinned() else data.pin_memory()
    if isinstance(data, BaseDataElement):
        return data.new(**{key: pinned(value) for key, value in data.items()})
    return data


@MODELS.register_module()
class UDASegDataPreProcessor(SegDataPreProcessor):
    """:class:`SegDataPreProcessor` that also handles ``source``/``target`` batches.

    A training batch from :class:`~madm.datasets.UDADataset` (after
    ``pseudo_collate``) is ``dict(source=dict(inputs=[...], data_samples=[...]),
    target=dict(...))``. Each branch goes through the parent's processing
    separately (cast, BGR→RGB, normalise, pad and stack; the unlabelled
    target samples simply carry no ``gt_sem_seg``), and the result is::

        dict(inputs=dict(source=Tensor (N, 3, H, W), target=Tensor (N, 3, H, W)),
             data_samples=dict(source=[SegDataSample], target=[SegDataSample]))

    Any other batch (validation, test, plain training) is processed as by
    :class:`SegDataPreProcessor`, with one change that gives the same values: the
    BGR→RGB flip is ``Tensor.flip`` on the device. mmseg indexes each image with the
    Python list ``[2, 1, 0]``, which copies an index to the GPU and waits for it: 4 of
    the 25 host syncs that ``tools/benchmark.py --host-sync-audit`` found in a training
    step before (docs/benchmarks.md).

    MADM feeds images in [0, 1] RGB: configure ``mean=[0, 0, 0],
    std=[255, 255, 255], bgr_to_rgb=True`` (reference ``pixel_mean=0,
    pixel_std=255``, method.md §1 step 2). Training batches need ``size`` or
    ``size_divisor`` (mmseg's ``stack_batch`` requires one).

    Args:
        non_blocking (bool): Copy images and labels to the device with
            ``non_blocking=True`` (mmengine's ``BaseDataPreprocessor`` option, which
            ``SegDataPreProcessor`` does not pass on). On CUDA it first pins what is not
            pinned yet (:func:`pinned`): with the dataloader's ``pin_memory=True`` only the
            labels, which the dataloader cannot pin inside data samples. A copy from pageable
            memory may wait for the GPU's queued work; from pinned memory it overlaps it.
            Same values either way. Defaults to False.
        **kwargs: Forwarded to :class:`SegDataPreProcessor` (``mean``, ``std``,
            ``size``, ``size_divisor``, ``pad_val``, ``seg_pad_val``,
            ``bgr_to_rgb``, ``rgb_to_bgr``, ``batch_augments``, ``test_cfg``).
    """

    def __init__(self, non_blocking: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self._non_blocking = non_blocking
        # The parent's list-index flip is turned off; cast_data flips on the device instead.
        self._flip_channels = self.channel_conversion
        self.channel_conversion = False

    def forward(self, data: dict, training: bool = False) -> dict[str, Any]:
        """Preprocess a UDA batch branch by branch, or any other batch as the parent does.

        Args:
            data (dict): A collated batch.
            training (bool): Whether this is a training step.

        Returns:
            dict: ``inputs`` and ``data_samples``; for a UDA batch each is a
            dict keyed by ``'source'`` and ``'target'``.
        """
        if not all(branch in data for branch in _BRANCHES):
            return super().forward(data, training)
        if training and self.size is None and self.size_divisor is None:
            raise ValueError('UDASegDataPreProcessor needs `size` (e.g. (512, 512)) or `size_divisor` '
                             'to stack training batches; set one in model.data_preprocessor.')
        inputs, data_samples = {}, {}
        for branch in _BRANCHES:
            out = super().forward(data[branch], training)
            inputs[branch], data_samples[branch] = out['inputs'], out['data_samples']
        return dict(inputs=inputs, data_samples=data_samples)

    def cast_data(self, data: Any) -> Any:
        """Copy ``data`` to the device and, for a batch, flip its images from BGR to RGB there.

        The flip follows the parent's rule (all images when the first has 3 channels) and
        replaces the parent's list index, which it turns off in ``__init__``. With
        ``non_blocking`` on CUDA, tensors and data samples are pinned first.
        """
        if isinstance(data, (torch.Tensor, BaseDataElement)) and self._pins_before_copy():
            data = pinned(data)
        data = super().cast_data(data)
        inputs = data.get('inputs') if isinstance(data, dict) else None
        if self._flip_channels and inputs is not None and len(inputs) and inputs[0].size(0) == 3:
            data = {**data, 'inputs': [img.flip(0) for img in inputs]}
        return data

    def _pins_before_copy(self) -> bool:
        return self._non_blocking and torch.device(self.device).type == 'cuda'
