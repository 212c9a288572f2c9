"""One training epoch through our code (Recipe + the trainer's epoch loop) against a plain hand-written PyTorch loop.

Both sides get the same model (same initial weights), data, batch size, augmentation and threads, and shuffle with
a seeded ``torch.Generator`` in the same way; epochs alternate between the two sides so that load from other
processes hits both alike. Prints seconds per epoch and the ratio ours / plain (target <= 1.05).

    python benchmarks/training_bench.py [--threads N] [--reps R] [--mlp-reps R] [--cnn-samples N]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from workers.training.augment import RandomCropFlip
from workers.training.data import DatasetSplits, load_dataset
from workers.training.models import build_model
from workers.training.recipe import Recipe
from workers.trial_config import (DatasetConfig, MLPConfig, ModelConfig, PreResNetConfig, SGDConfig, SWALinearConfig,
                                  TrainerConfig, TrialConfig)

try:
    from workers.training.loop import train_one_epoch
except ImportError:  # the trainer's loop is not there yet: the same batching, written against its signature
    train_one_epoch = None

SGD = SGDConfig(lr=0.05, weight_decay=1e-4, momentum=0.9)
SCHEDULE = SWALinearConfig(final_ratio=0.01)
MNIST5K = DatasetConfig(name="mnist5k")


def _stand_in_epoch(model, recipe, splits, epoch, batch_size, generator, device, first_step=0):
    model.train()
    order = torch.randperm(len(splits.train_targets), generator=generator)
    for step, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        inputs = splits.train_inputs[idx]
        if splits.augment is not None:
            inputs = splits.augment(inputs, generator)
        loss = F.cross_entropy(model(inputs.to(device)), splits.train_targets[idx].to(device))
        recipe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        recipe.optimizer.step()
        recipe.after_step(epoch, first_step + step)


def plain_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor,
                batch_size: int, generator: torch.Generator, augment: Optional[Callable]) -> None:
    model.train()
    order = torch.randperm(len(targets), generator=generator)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        x = inputs[idx] if augment is None else augment(inputs[idx], generator)
        loss = F.cross_entropy(model(x), targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def bench(label: str, model_cfg: ModelConfig, splits: DatasetSplits, batch_size: int, reps: int) -> float:
    torch.manual_seed(0)
    ours_model = build_model(model_cfg, splits.input_shape, splits.num_classes)
    plain_model = copy.deepcopy(ours_model)
    cfg = TrialConfig(model=model_cfg, dataset=MNIST5K, optimizer=SGD, schedule=SCHEDULE,
                      trainer=TrainerConfig(epochs=reps + 1, batch_size=batch_size))
    recipe = Recipe(cfg, ours_model, -(-len(splits.train_targets) // batch_size))
    plain_optimizer = torch.optim.SGD(plain_model.parameters(), lr=SGD.lr, momentum=SGD.momentum,
                                      weight_decay=SGD.weight_decay)
    epoch_fn = train_one_epoch or _stand_in_epoch
    ours_generator, plain_generator = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    device = torch.device("cpu")
    ours_times, plain_times = [], []
    for epoch in range(reps + 1):  # epoch 0 warms up both sides
        for side in ("plain", "ours") if epoch % 2 == 0 else ("ours", "plain"):
            start = time.perf_counter()
            if side == "ours":
                recipe.set_epoch(epoch)
                epoch_fn(ours_model, recipe, splits, epoch, batch_size, ours_generator, device)
                recipe.after_epoch(epoch)
            else:
                for group in plain_optimizer.param_groups:
                    group["lr"] = recipe.lr_at(epoch)
                plain_epoch(plain_model, plain_optimizer, splits.train_inputs, splits.train_targets, batch_size,
                            plain_generator, splits.augment)
            if epoch:
                (ours_times if side == "ours" else plain_times).append(time.perf_counter() - start)
    # Each epoch's two sides run back to back: the median of their ratios cancels slow changes in machine load.
    ratio = statistics.median(o / p for o, p in zip(ours_times, plain_times))
    print(f"{label:<50} ours {statistics.median(ours_times):7.3f} s  plain {statistics.median(plain_times):7.3f} s"
          f"  ratio {ratio:5.3f}  (best-of ratio {min(ours_times) / min(plain_times):5.3f})")
    return ratio


def synthetic_cifar(samples: int) -> DatasetSplits:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 3, 32, 32, generator=generator)
    y = torch.randint(0, 100, (samples,), generator=generator)
    return DatasetSplits(x, y, x[:256], y[:256], 100, (3, 32, 32), RandomCropFlip(4, (-1.9, -1.9, -1.6)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # One thread, as a trial gets with the default cluster.num_cpus=1; several threads on shared cores mostly
    # measure the other processes.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5, help="timed CNN epochs per side (after one warm-up epoch)")
    parser.add_argument("--mlp-reps", type=int, default=30, help="timed MLP epochs per side")
    parser.add_argument("--cnn-samples", type=int, default=512, help="size of the synthetic CIFAR-shaped set")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = "workers.training.loop.train_one_epoch" if train_one_epoch else "a stand-in with its signature"
    print(f"torch {torch.__version__}, {args.threads} thread(s), our epoch: {source}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    mnist5k = load_dataset(MNIST5K)
    ratios = [
        bench("mlp 784-100-10, mnist5k (4000), batch 128", MLPConfig(hidden_sizes=[100]),
              mnist5k, 128, args.mlp_reps),
        bench(f"preresnet depth 20, cifar-shaped ({args.cnn_samples}), batch 128", PreResNetConfig(depth=20),
              synthetic_cifar(args.cnn_samples), 128, args.reps),
    ]
    verdict = "ok" if max(ratios) <= 1.05 else "ABOVE TARGET"
    print(f"worst ratio ours/plain {max(ratios):.3f} (target <= 1.05): {verdict}")


if __name__ == "__main__":
    main()
