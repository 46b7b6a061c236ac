import pytest
import torch
from torch import nn

from madm.models.utils import recompute_batchnorm_statistics


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.3),
                         nn.Dropout(0.5), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))


def test_statistics_become_the_average_over_the_batches():
    model = _model()
    model.train()
    source = torch.randn(8, 3, 6, 6)
    model(source)  # source statistics, one momentum step
    weights = {k: v.clone() for k, v in model.state_dict().items() if 'running' not in k
               and 'num_batches' not in k}
    batches = [torch.randn(2, 3, 6, 6) * 3 + 5 for _ in range(4)]
    assert recompute_batchnorm_statistics(model, batches, model) == 4
    # what the first BN sees: the conv output of every batch (equal sizes: the cumulative
    # average of the batch means is their mean; of the unbiased variances, their mean)
    with torch.no_grad():
        feats = [model[0](b) for b in batches]
    bn = model[1]
    expected_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    expected_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-5, atol=1e-5)
    assert int(bn.num_batches_tracked) == 4
    # momenta, modes and weights as before; dropout was off (same output twice in train mode
    # would differ), so the second BN saw deterministic inputs
    assert bn.momentum == 0.3 and model[4].momentum == 0.1
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        if k in weights:
            assert torch.equal(v, weights[k]), k


def test_dropout_stays_off_while_the_statistics_are_gathered():
    model = _model()
    model.eval()
    batches = [torch.randn(2, 3, 6, 6)]
    recompute_batchnorm_statistics(model, batches, model)
    first = model[4].running_mean.clone()
    recompute_batchnorm_statistics(model, batches, model)
    torch.testing.assert_close(model[4].running_mean, first)  # random dropout would differ
    assert not any(m.training for m in model.modules())


def test_failures_keep_the_old_statistics():
    model = _model()
    model.train()
    model(torch.randn(4, 3, 6, 6))  # statistics that differ from a reset's 0 / 1
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert int(model[1].num_batches_tracked) == 1
    with pytest.raises(ValueError, match='no batch'):
        recompute_batchnorm_statistics(model, [], model)

    def broken(batch):
        model(batch)
        raise RuntimeError('corrupted image')

    with pytest.raises(RuntimeError, match='corrupted'):
        recompute_batchnorm_statistics(model, [torch.randn(2, 3, 6, 6)], broken)

    def second_image_corrupted():  # a failure after some batches went through
        yield torch.randn(2, 3, 6, 6)
        raise OSError('corrupted PNG')

    with pytest.raises(OSError, match='corrupted PNG'):
        recompute_batchnorm_statistics(model, second_image_corrupted(), model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model[1].momentum == 0.3
    with pytest.raises(ValueError, match='no batch-norm layer'):
        recompute_batchnorm_statistics(nn.Conv2d(3, 3, 1), [torch.randn(1, 3, 2, 2)],
                                       lambda b: None)


def test_layers_the_forward_does_not_run_keep_their_statistics():
    model = nn.ModuleDict(dict(student=_model(), teacher=_model()))
    model.train()
    model['teacher'](torch.randn(4, 3, 6, 6))
    teacher = {k: v.clone() for k, v in model['teacher'].state_dict().items()}
    recompute_batchnorm_statistics(model, [torch.randn(2, 3, 6, 6)], model['student'])
    assert int(model['student'][1].num_batches_tracked) == 1
    for k, v in model['teacher'].state_dict().items():
        assert torch.equal(v, teacher[k]), k
