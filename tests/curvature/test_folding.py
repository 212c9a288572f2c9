"""Eval-mode BatchNorm folded into the convolution before it: where it folds, where it must not, and that the
folded operator is still the exact Hessian."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.curvature import HessianOperator
from workers.curvature.batchnorm import ElementwiseBatchNorm
from workers.curvature.folding import ConvolutionWithBatchNorm, FoldedBatchNorm, foldable_pairs
from workers.curvature.network import private_copy


def _kinds(model: nn.Module) -> list[type]:
    return [type(m) for m in model.children()]


def test_a_convolution_and_the_batch_norm_reading_it_fold_keeping_names_and_outputs(ref):
    model = ref.make_model("bn_cnn").eval()
    replica = private_copy(model, "eval", torch.float64, None)
    assert _kinds(replica)[:2] == [ConvolutionWithBatchNorm, FoldedBatchNorm]
    assert [name for name, _ in replica.named_parameters()] == [name for name, _ in model.named_parameters()]
    inputs = ref.make_data("bn_cnn")[0][0]
    torch.testing.assert_close(replica(inputs), model(inputs), rtol=1e-12, atol=1e-12)


def test_train_mode_and_a_convolution_read_elsewhere_keep_the_elementwise_layer(ref):
    assert _kinds(private_copy(ref.make_model("bn_cnn"), "train", torch.float64, None))[:2] == [
        nn.Conv2d, ElementwiseBatchNorm]
    skip = private_copy(ref.make_model("skip_cnn"), "eval", torch.float64, None)
    assert (type(skip.conv), type(skip.norm)) == (nn.Conv2d, ElementwiseBatchNorm)


class _Untraceable(nn.Module):
    """Data-dependent control flow, which torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features = self.norm(self.conv(inputs))
        return features.flatten(1) if inputs.sum() > 0 else -features.flatten(1)


@pytest.mark.parametrize(("model", "pairs"), [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)), []),
    (nn.Sequential(nn.ConvTranspose2d(1, 2, 3), nn.BatchNorm2d(2)), []),
    (_Untraceable(), []),
    (nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.Conv1d(2, 2, 1), nn.BatchNorm1d(2)),
     [("0", "1"), ("2", "3")]),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.5), nn.Identity(), nn.BatchNorm2d(2)), [("0", "3")]),
])
def test_only_a_convolution_then_a_layer_with_running_statistics_is_folded(model, pairs):
    assert foldable_pairs(model) == pairs


def test_a_fold_past_dropout_without_bias_or_affine_terms_stays_exact(ref):
    """WideResNet's pattern (convolution, dropout, BatchNorm), with the optional terms absent."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Dropout(0.5), nn.BatchNorm2d(2, affine=False),
                          nn.Tanh(), nn.Flatten(), nn.Linear(18, 3)).double()
    with torch.no_grad():
        model[2].running_mean.uniform_(-0.5, 0.5)
        model[2].running_var.uniform_(0.5, 2.0)
    batches = ref.make_data("bn_cnn")
    operator = HessianOperator(model, F.cross_entropy, batches, dtype=torch.float64)
    assert _kinds(private_copy(model, "eval", torch.float64, None))[:3] == [
        ConvolutionWithBatchNorm, nn.Dropout, FoldedBatchNorm]
    assert ref.relative_error(ref.dense(operator), ref.exact_hessian(model, batches, "eval")) < 1e-10
