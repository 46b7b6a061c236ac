"""Palette painting of labels for LPLR (method.md §5.1)."""
import torch

from madm.models.uda import paint_labels


def test_paint_labels_by_hand():
    palette = torch.tensor([[0, 255, 102], [255, 0, 51]], dtype=torch.uint8)
    labels = torch.tensor([[[0, 1], [255, 7]], [[-1, 1], [1, 0]]])
    out = paint_labels(labels, palette)
    assert out.shape == (2, 3, 2, 2) and out.dtype == torch.float32
    c0 = torch.tensor([-1.0, 1.0, 102 / 127.5 - 1])  # (-1, 1, -0.2)
    c1 = torch.tensor([1.0, -1.0, 51 / 127.5 - 1])  # (1, -1, -0.6)
    black = torch.tensor([-1.0, -1.0, -1.0])
    torch.testing.assert_close(out[0, :, 0, 0], c0)
    torch.testing.assert_close(out[0, :, 0, 1], c1)
    torch.testing.assert_close(out[0, :, 1, 0], black)  # ignore
    torch.testing.assert_close(out[0, :, 1, 1], black)  # out of range (7 >= C = 2)
    torch.testing.assert_close(out[1, :, 0, 0], black)  # negative
    torch.testing.assert_close(out[1, :, 1, 1], c0)
    torch.testing.assert_close(out[0, 2, 0, 0], torch.tensor(-0.2))


def test_paint_labels_float_palette_and_custom_ignore():
    palette = torch.tensor([[127.5, 127.5, 127.5], [255.0, 255.0, 255.0]])
    labels = torch.tensor([[[0, 1]]])
    out = paint_labels(labels, palette, ignore_index=1)
    torch.testing.assert_close(out[0, :, 0, 0], torch.zeros(3))  # mid grey -> 0
    torch.testing.assert_close(out[0, :, 0, 1], -torch.ones(3))  # label 1 is "ignore" here
