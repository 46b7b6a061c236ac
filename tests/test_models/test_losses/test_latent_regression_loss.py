"""LPLR loss (method.md §5.2)."""
import pytest
import torch

from madm.models.losses import LatentRegressionLoss


def _example():
    """pred 0, target ch0 [[1,2],[3,4]], ch1 all -1; 4x4 mask whose cells' top-left pixels are [[1,0],[1,0]]."""
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.stack([torch.tensor([[1., 2.], [3., 4.]]), torch.full((2, 2), -1.)])[None]
    valid = torch.ones(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 2] = False  # top-left of cell (0, 1): the rest of that cell is valid, and ignored by 'nearest'
    valid[0, 2, 2] = False  # top-left of cell (1, 1)
    valid[0, 1, 1] = False  # NOT a top-left pixel: cell (0, 0) stays valid
    return pred, target, valid


def test_l1_normalize_all_by_hand():
    pred, target, valid = _example()
    # valid latent cells (0,0) and (1,0): ch0 |1| + |3| = 4, ch1 1 + 1 = 2 -> 6; / (1*2*2*2 = 8)
    loss = LatentRegressionLoss()(pred, target, valid)
    assert loss.item() == pytest.approx(0.75)


def test_l1_normalize_valid_by_hand():
    pred, target, valid = _example()
    # 2 valid cells x 2 channels = 4 valid elements -> 6 / 4
    loss = LatentRegressionLoss(normalize='valid')(pred, target, valid)
    assert loss.item() == pytest.approx(1.5)


def test_weights_loss_weight_and_l2():
    pred, target, valid = _example()
    assert LatentRegressionLoss()(pred, target, valid, weight=0.5).item() == pytest.approx(0.375)
    assert LatentRegressionLoss()(pred, target, valid, weight=torch.tensor([0.5])).item() == pytest.approx(0.375)
    # 'valid' counts valid elements, not their weights: 6 * 0.5 / 4
    assert LatentRegressionLoss(normalize='valid')(pred, target, valid,
                                                   weight=torch.tensor([0.5])).item() == pytest.approx(0.75)
    # per-pixel weight at image resolution, resized like the mask: cell (1,0) top-left gets 0
    pixel_w = torch.ones(1, 4, 4)
    pixel_w[0, 2, 0] = 0.0
    # only cell (0,0) remains: ch0 1 + ch1 1 = 2 -> / 8
    assert LatentRegressionLoss()(pred, target, valid, weight=pixel_w).item() == pytest.approx(0.25)
    assert LatentRegressionLoss(loss_weight=20.0)(pred, target, valid).item() == pytest.approx(15.0)
    # L2: ch0 1 + 9 = 10, ch1 1 + 1 = 2 -> 12 / 8
    assert LatentRegressionLoss(loss_type='l2')(pred, target, valid).item() == pytest.approx(1.5)


def test_gradient_only_through_valid_cells_and_all_ignored():
    pred, target, valid = _example()
    pred.requires_grad_(True)
    LatentRegressionLoss()(pred, target, valid).backward()
    # d|p - t|/dp = sign(p - t) / 8 on valid cells; here p=0 < t on ch0 and p > t on ch1
    expected = torch.tensor([[[[-1., 0.], [-1., 0.]], [[1., 0.], [1., 0.]]]]) / 8
    torch.testing.assert_close(pred.grad, expected)
    none_valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert LatentRegressionLoss(normalize='valid')(pred, target, none_valid).item() == 0.0


def test_registry_name_and_errors():
    from mmseg.registry import MODELS
    loss = MODELS.build(dict(type='LatentRegressionLoss', loss_name='loss_lplr_src'))
    assert isinstance(loss, LatentRegressionLoss) and loss.loss_name == 'loss_lplr_src'
    assert LatentRegressionLoss().loss_name == 'loss_lplr'
    with pytest.raises(ValueError, match="start with 'loss_'"):
        LatentRegressionLoss(loss_name='lplr')
    with pytest.raises(ValueError, match='normalize'):
        LatentRegressionLoss(normalize='mean')
    pred, target, valid = _example()
    with pytest.raises(ValueError, match='valid_mask'):
        LatentRegressionLoss()(pred, target, valid[0])
