"""Hessian and GGN products against exact float64 matrices on small models."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from workers.curvature import GGNOperator, HessianOperator

CASES = [("tanh_mlp", "eval"), ("relu_mlp", "eval"), ("bn_cnn", "eval"), ("bn_cnn", "train"), ("bn_mlp", "eval"),
         ("bn_mlp", "train"), ("skip_cnn", "eval")]


@pytest.mark.parametrize(("name", "bn_mode"), CASES)
def test_hessian_products_equal_exact_hessian(ref, name, bn_mode):
    model, batches = ref.make_model(name), ref.make_data(name)
    operator = HessianOperator(model, F.cross_entropy, batches, bn_mode=bn_mode, dtype=torch.float64)
    assert ref.relative_error(ref.dense(operator), ref.exact_hessian(model, batches, bn_mode)) < 1e-10


@pytest.mark.parametrize(("name", "bn_mode"), CASES)
def test_ggn_products_equal_explicit_jt_h_j(ref, name, bn_mode):
    model, batches = ref.make_model(name), ref.make_data(name)
    operator = GGNOperator(model, F.cross_entropy, batches, bn_mode=bn_mode, dtype=torch.float64)
    assert ref.relative_error(ref.dense(operator), ref.exact_ggn(model, batches, bn_mode)) < 1e-10


@pytest.mark.parametrize(("name", "bn_mode"), CASES)
@pytest.mark.parametrize(("operator_class", "exact"), [(HessianOperator, "exact_hessian"), (GGNOperator, "exact_ggn")])
def test_one_batch_keeps_its_graph_across_products_and_stays_exact(ref, operator_class, exact, name, bn_mode):
    model, batches = ref.make_model(name), ref.make_data(name, sizes=(9,))
    operator = operator_class(model, F.cross_entropy, batches[0], bn_mode=bn_mode, dtype=torch.float64)
    with torch.no_grad():
        matrix = ref.dense(operator)
    assert ref.relative_error(matrix, getattr(ref, exact)(model, batches, bn_mode)) < 1e-10


@pytest.mark.parametrize("operator_class", [HessianOperator, GGNOperator])
def test_one_batch_runs_the_network_once_and_many_batches_once_per_product(ref, operator_class):
    """The kept graph is really reused (one forward for any number of products, as PyHessian does for one
    batch); data of several batches, or an iterable the operator cannot know repeats, rebuilds it each time."""
    model, batches = ref.make_model("bn_cnn"), ref.make_data("bn_cnn")
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(len(args[0])))
    inputs, targets = (torch.cat(t) for t in zip(*batches, strict=True))
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)

    def forwards_for_three_products(data, **options) -> list[int]:
        forwards.clear()
        operator = operator_class(model, F.cross_entropy, data, dtype=torch.float64, **options)
        products = [operator.matvec(v) for _ in range(3)]
        assert all(torch.equal(products[0], p) for p in products[1:])
        return list(forwards)

    assert forwards_for_three_products((inputs, targets)) == [len(inputs)]
    assert forwards_for_three_products([(inputs, targets)]) == [len(inputs)]
    assert forwards_for_three_products((inputs, targets), batch_size=7) == [7, 7, 2] * 3
    assert forwards_for_three_products(iter(batches)) == [7, 5, 4] * 3
    assert forwards_for_three_products(DataLoader(TensorDataset(inputs, targets), batch_size=16)) == [16] * 3


def test_bn_modes_give_different_operators(ref):
    model, batches = ref.make_model("bn_cnn"), ref.make_data("bn_cnn")
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    train, eval_ = (
        HessianOperator(model, F.cross_entropy, batches, bn_mode=mode, dtype=torch.float64).matvec(v)
        for mode in ("train", "eval")
    )
    assert ref.relative_error(train, eval_) > 1e-3


@pytest.mark.parametrize("operator_class", [HessianOperator, GGNOperator])
def test_train_mode_leaves_the_users_model_untouched(ref, operator_class):
    model, batches = ref.make_model("bn_cnn").train(), ref.make_data("bn_cnn")
    before = copy.deepcopy(model.state_dict())
    operator = operator_class(model, F.cross_entropy, batches, bn_mode="train", dtype=torch.float32)
    operator.matvec(torch.ones(operator.size))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.dtype == torch.float64 and p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_parameter_prefixes_select_the_hessian_sub_block(ref):
    model, batches = ref.make_model("bn_cnn"), ref.make_data("bn_cnn")
    full = ref.exact_hessian(model, batches, "eval")
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    offsets = dict(zip(names, torch.tensor([0, *sizes]).cumsum(0).tolist()[:-1], strict=True))
    chosen = ["1.weight", "1.bias", "4.weight", "4.bias"]
    index = torch.cat([torch.arange(offsets[n], offsets[n] + model.get_parameter(n).numel()) for n in chosen])
    operator = HessianOperator(model, F.cross_entropy, batches, params=["1", "4.weight", "4.bias"], dtype=torch.float64)
    assert operator.size == len(index)
    assert ref.relative_error(ref.dense(operator), full[index][:, index]) < 1e-10


def test_unknown_prefix_is_refused(ref):
    with pytest.raises(ValueError, match=r"params=\['fc'\] match no parameter"):
        HessianOperator(ref.make_model("tanh_mlp"), F.cross_entropy, ref.make_data("tanh_mlp"), params="fc")


def test_every_data_form_gives_the_same_operator(ref):
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    inputs, targets = (torch.cat(t) for t in zip(*batches, strict=True))
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)

    def product(data, **options) -> torch.Tensor:
        return HessianOperator(model, F.cross_entropy, data, dtype=torch.float64, **options).matvec(v)

    expected = ref.exact_hessian(model, batches, "eval") @ v
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=5)
    pair = (inputs, targets)
    for actual in (product(pair), product(pair, batch_size=5), product(iter(batches)), product(loader)):
        assert ref.relative_error(actual, expected) < 1e-10


def test_float32_is_the_default_and_leaves_float64_models_alone(ref):
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    operator = HessianOperator(model, F.cross_entropy, batches)
    assert operator.dtype == torch.float32 and operator.device == torch.device("cpu")
    assert next(model.parameters()).dtype == torch.float64
    v = torch.randn(operator.size, dtype=torch.float64)
    assert ref.relative_error(operator.matvec(v).double(), ref.exact_hessian(model, batches, "eval") @ v) < 1e-5


def test_bad_arguments_are_refused(ref):
    model, batches = ref.make_model("tanh_mlp"), ref.make_data("tanh_mlp")
    with pytest.raises(ValueError, match="bn_mode='training' is not supported"):
        HessianOperator(model, F.cross_entropy, batches, bn_mode="training")
    with pytest.raises(ValueError, match="batch_size=4 applies to an"):
        HessianOperator(model, F.cross_entropy, batches, batch_size=4)
    with pytest.raises(ValueError, match=r"the model \(ReLU\) has no parameters"):
        HessianOperator(torch.nn.ReLU(), F.cross_entropy, batches)
    operator = HessianOperator(model, F.cross_entropy, batches)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        operator.matvec(torch.ones(3))
