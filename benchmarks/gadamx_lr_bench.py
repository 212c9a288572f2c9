"""How long a step GadamX takes against Adam's at the same learning rate, and which rates it trains at.

GadamX divides by v_hat^p + eps with p = 1/8 instead of sqrt(v_hat): for gradients of size g << 1 its step is about
g^(1 - 2p) = g^0.75 times the rate where Adam's is about 1, i.e. orders of magnitude shorter. This script measures
the ratio |step_gadamx| / |step_adam| on the same gradients of the paper's MLP on MNIST (5,000 images), then trains
each optimizer over a learning-rate grid through the trials' own recipe and reports test accuracy, so the presets'
grids can be checked against what actually trains.

    python benchmarks/gadamx_lr_bench.py [--epochs 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import math

import torch
import torch.nn.functional as F

from orchestrator.planning import plan_sweep
from workers.training.data import load_dataset
from workers.training.loop import evaluate, train_one_epoch
from workers.training.models import build_model
from workers.training.recipe import Recipe
from workers.trial_config import TrialConfig

GRIDS = {
    "sgd": (0.01, 0.03, 0.1),
    "adam": (1e-4, 3e-4, 1e-3),
    "gadam": (1e-4, 3e-4, 1e-3),
    "gadamx": (1e-4, 3e-4, 1e-3, 0.01, 0.03, 0.1, 0.3),
}


def config(optimizer: str, lr: float, epochs: int) -> TrialConfig:
    [trial] = plan_sweep([f"optimizer={optimizer}", f"optimizer.lr={lr}", "dataset=mnist5k", "model.hidden_sizes=[100]",
                          f"trainer.epochs={epochs}", "schedule=paper"], multirun=False).trials
    return trial.config


def step_ratio(splits, steps: int = 50) -> list[float]:
    """|Delta w| of GadamX over Adam's at one learning rate, on the same sequence of gradients (Adam's iterates)."""
    cfg = config("adam", 1e-3, 10)
    torch.manual_seed(0)
    model = build_model(cfg.model, splits.input_shape, splits.num_classes)
    shadow = copy.deepcopy(model)
    adam = Recipe(cfg, model, 40).optimizer
    gadamx = Recipe(config("gadamx", 1e-3, 10), shadow, 40).optimizer
    ratios, generator = [], torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(splits.train_targets), (128,), generator=generator)
        loss = F.cross_entropy(model(splits.train_inputs[idx]), splits.train_targets[idx])
        adam.zero_grad()
        loss.backward()
        for p, q in zip(model.parameters(), shadow.parameters()):
            q.grad = p.grad.clone()
            q.data.copy_(p.data)
        before = [p.detach().clone() for p in model.parameters()]
        adam.step()
        gadamx.step()
        moved_adam = math.sqrt(sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(model.parameters(), before)))
        moved_x = math.sqrt(sum(float(((q.detach() - b) ** 2).sum()) for q, b in zip(shadow.parameters(), before)))
        ratios.append(moved_x / moved_adam)
    return ratios


def train(cfg: dict, splits) -> float:
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg.model, splits.input_shape, splits.num_classes)
    batch = cfg.trainer.batch_size
    recipe = Recipe(cfg, model, math.ceil(len(splits.train_targets) / batch))
    generator = torch.Generator().manual_seed(0)
    step = 0
    for epoch in range(cfg.trainer.epochs):
        recipe.set_epoch(epoch)
        step += train_one_epoch(model, recipe, splits, epoch, batch, generator, torch.device("cpu"), step).steps
        recipe.after_epoch(epoch)
    averaged = recipe.averaged_model(splits.train_inputs)
    return evaluate(averaged or model, splits.test_inputs, splits.test_targets, 1000, torch.device("cpu"))[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset(config("sgd", 0.1, 1).dataset)
    ratios = sorted(step_ratio(splits))
    print(f"|step gadamx| / |step adam| at lr 1e-3, p = 1/8, 50 MLP steps: median {ratios[len(ratios) // 2]:.2e} "
          f"(min {ratios[0]:.2e}, max {ratios[-1]:.2e})")
    for optimizer, grid in GRIDS.items():
        for lr in grid:
            accuracy = train(config(optimizer, lr, args.epochs), splits)
            print(f"{optimizer:7s} lr {lr:<7g} {args.epochs} epochs: test accuracy {accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
