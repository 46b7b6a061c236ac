import pytest
import torch

from madm.utils import mmcv_compat


def test_mmseg_models_import_and_point_sample_works():
    import mmcv.ops
    import mmseg.models  # noqa: F401  fails without the shim under mmcv-lite

    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    points = torch.tensor([[[0.125, 0.125], [0.875, 0.875]]])  # pixel centres (0,0), (3,3)
    out = mmcv.ops.point_sample(feats, points, align_corners=False)
    assert torch.allclose(out.flatten(), torch.tensor([0.0, 15.0]))


@pytest.mark.skipif(not mmcv_compat.MMCV_LITE_SHIM_ACTIVE, reason='real mmcv ops installed')
def test_missing_ops_raise_module_not_found_for_mmseg_guards():
    with pytest.raises(ModuleNotFoundError, match='compiled mmcv ops'):
        from mmcv.ops import CrissCrossAttention  # noqa: F401
    import mmcv.ops
    with pytest.raises(NotImplementedError):
        mmcv.ops.sigmoid_focal_loss(torch.zeros(1), torch.zeros(1))
