"""Eval-mode BatchNorm folded into the convolution before it, for operators that differentiate it twice.

In eval mode a BatchNorm layer is a per-channel affine map x * s + t. Right after a convolution whose output
nothing else reads, the two compose into one convolution with weight W * s and bias b * s + t. Computed inside the
forward from the layers' own parameters, the folded network is the same function of the same parameters, so it
has the same derivatives; but the batch-sized activations pass through one layer instead of two, and a product's
double backward touches them half as often. Measured on this 2-core CPU for `benchmarks/lanczos_bench.py`'s
2-conv BatchNorm CNN at batch 256, fastest of 5: 0.068 s per Hessian-vector product unfolded, 0.038 s folded; a
40-step Lanczos run 3.13 s / 1.60 s.

The pairs are read from the model's graph as torch.fx traces it. A model it cannot trace (data-dependent control
flow, say) is left unfolded, and its BatchNorm layers keep their elementwise form.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from workers.curvature.batchnorm import ElementwiseBatchNorm

# Exact types: a subclass may convolve differently (weight standardisation, say), and folding assumes it does not.
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Layers that pass their input on unchanged in eval mode, where the operators evaluate the model.
EVAL_IDENTITIES = (nn.Identity, _DropoutNd)


class FoldedBatchNorm(ElementwiseBatchNorm):
    """An eval-mode BatchNorm layer whose map the convolution before it applies: it passes its input on. It stays
    where the layer was, so the layer's parameters and statistics keep their names and order."""

    def __init__(self, layer: _BatchNorm) -> None:
        super().__init__(layer, batch_statistics=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs


class ConvolutionWithBatchNorm(nn.Module):
    """A convolution followed by a folded BatchNorm layer, holding the convolution's own parameters."""

    def __init__(self, convolution: nn.Module, norm: FoldedBatchNorm) -> None:
        super().__init__()
        self.weight, self.bias = convolution.weight, convolution.bias
        # The layer's own stride, padding (and padding mode), dilation and groups.
        self._convolve = convolution._conv_forward
        # In a tuple, so that it is not a submodule here: its parameters are counted once, where the layer is.
        self._norm = (norm,)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        scale, shift = self._norm[0].running_affine()
        weight = self.weight * scale.view((-1,) + (1,) * (self.weight.dim() - 1))
        return self._convolve(inputs, weight, shift if self.bias is None else self.bias * scale + shift)


def fold_batch_norms_(model: nn.Module) -> nn.Module:
    """Fold (in place) every BatchNorm layer with running statistics into the convolution whose output it reads
    and nothing else does, each called once; the model must be one its operator evaluates in eval mode."""
    for convolution_name, norm_name in foldable_pairs(model):
        norm = FoldedBatchNorm(model.get_submodule(norm_name))
        model.set_submodule(convolution_name, ConvolutionWithBatchNorm(model.get_submodule(convolution_name), norm))
        model.set_submodule(norm_name, norm)
    return model


def foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(convolution, BatchNorm layer) names of the pairs `fold_batch_norms_` folds: the layer reads the
    convolution's output, directly or through layers that are identities in eval mode (WideResNet's dropout)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - tracing runs the model's own forward code, which may fail in any way
        return []
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")

    def module(node: object) -> Optional[nn.Module]:
        """The module a node calls with one input; None for any other node."""
        if isinstance(node, fx.Node) and node.op == "call_module" and len(node.args) == 1 and not node.kwargs:
            return modules[node.target]
        return None

    def source(norm: fx.Node) -> object:
        """What the layer normalises, past identities that only it reads."""
        node = norm.args[0]
        while isinstance(module(node), EVAL_IDENTITIES) and len(node.users) == 1:
            node = node.args[0]
        return node

    pairs = []
    for node in graph.nodes:
        norm = module(node)
        if not isinstance(norm, _BatchNorm) or norm.running_mean is None or calls[node.target] != 1:
            continue
        convolution = source(node)
        if type(module(convolution)) in CONVOLUTIONS and calls[convolution.target] == 1 and len(convolution.users) == 1:
            pairs.append((convolution.target, node.target))
    return pairs
