"""Lanczos on one batch: the gradient's graph kept across products against rebuilt for each, and PyHessian.

1. Time of a whole 40-step Lanczos run (operator built inside the timed call, so the one forward and
   backward that build the kept graph are counted), on one batch of 256 MNIST-sized images: ours with the
   graph kept / ours with it rebuilt for every product (the path any multi-batch data takes), and ours / each
   peer that is installed: PyHessian 0.1's `density(iter=40, n_v=1)` (which also keeps the graph of a single
   batch, built in its constructor, timed with it) and hessian-eigenthings 1.0's `spectral_density(num_runs=1,
   lanczos_steps=40)` on its autograd `HessianOperator` (a new graph per product, full reorthogonalisation like
   ours). Models: MLP 784-100-10 and a 2-conv CNN with BatchNorm in eval mode.
2. Peak memory per Ray worker while a gang of k = 1 and k = 2 runs SLQ with the Lanczos basis sliced over
   it, for an MLP 784-2000-2000-10 (5.6M parameters, float32): the peak resident size above the worker's
   size just before the run (VmHWM after resetting it through /proc/PID/clear_refs), next to the basis's
   own share, steps x P / k x 4 bytes. Linux only; the gang runs on this machine's local Ray.

Times are the fastest of interleaved repeats: on a shared machine that is the least disturbed run.

    pip install --no-deps pyhessian==0.1           # optional peers, not project dependencies
    pip install hessian-eigenthings==1.0.0a5
    python benchmarks/lanczos_bench.py [--only speed|memory] [--repeats 5] [--steps 40] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workers.curvature import HessianOperator, ShardedCurvatureOperator, slq

Row = tuple[str, float, float, str]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))


def bn_cnn() -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 16), *block(16, 32), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def one_batch(device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(256, 1, 28, 28, generator=generator)
    targets = torch.randint(0, 10, (256,), generator=generator)
    return inputs.to(device), targets.to(device)


class Rebuilt:
    """The same single batch as a re-iterable: the operator cannot know an iterable repeats itself, so it
    rebuilds the graph for every product, exactly as for data of many batches."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield self.batch


def fastest_of(calls: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Fastest time of each call, interleaved so that every call meets the same background load."""
    for call in calls.values():
        call(), sync()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def pyhessian_density(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], steps: int) -> None:
    """PyHessian's density on one batch (curvature_bench's runner), then the graph it left in .grad dropped."""
    from curvature_bench import pyhessian_density as run_pyhessian

    run_pyhessian(model, {"data": batch}, steps)
    model.zero_grad(set_to_none=True)  # drop the graph it left in .grad


def eigenthings_density(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], steps: int) -> None:
    """hessian-eigenthings' SLQ: one Lanczos run of ``steps`` products on the one batch."""
    from hessian_eigenthings import HessianOperator as TheirHessian
    from hessian_eigenthings import spectral_density, supervised_loss

    operator = TheirHessian(model, [batch], supervised_loss(F.cross_entropy))
    spectral_density(operator, num_runs=1, lanczos_steps=steps, seed=0)


# Peer label -> (the module it needs, one whole run of it).
PEERS: dict[str, tuple[str, Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor], int], None]]] = {
    "PyHessian 0.1": ("pyhessian", pyhessian_density),
    "hessian-eigenthings 1.0": ("hessian_eigenthings", eigenthings_density),
}


def installed_peers() -> list[str]:
    return [label for label, (module, _) in PEERS.items() if importlib.util.find_spec(module) is not None]


def measure(name: str, model: nn.Module, steps: int, repeats: int, device: str) -> list[Row]:
    model = model.to(device).eval()
    batch = one_batch(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    calls: dict[str, Callable[[], object]] = {
        "kept": lambda: slq(HessianOperator(model, F.cross_entropy, batch, device=device), steps, 1),
        "rebuilt": lambda: slq(HessianOperator(model, F.cross_entropy, Rebuilt(batch), device=device), steps, 1),
    }
    for label in installed_peers():
        run_peer, theirs = PEERS[label][1], copy.deepcopy(model)
        calls[label] = lambda run_peer=run_peer, theirs=theirs: run_peer(theirs, batch, steps)
    best = fastest_of(calls, repeats, sync)
    rows = [(f"{name}: graph kept / rebuilt", best["kept"], best["rebuilt"], "< 1")]
    rows += [(f"{name}: ours (graph kept) / {label}", best["kept"], best[label], "<= 0.7") for label in PEERS
             if label in best]
    return rows


def wide_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 2000), nn.ReLU(), nn.Linear(2000, 2000), nn.ReLU(),
                         nn.Linear(2000, 10))


def _proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def basis_memory(num_workers: int, steps: int) -> list[tuple[float, float]]:
    """(peak MiB above the pre-run size, basis share MiB) for each worker of a gang of num_workers."""
    model = wide_mlp().eval()
    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(64, 1, 28, 28, generator=generator), torch.randint(0, 10, (64,), generator=generator)
    with ShardedCurvatureOperator(model, F.cross_entropy, inputs, targets, num_workers=num_workers,
                                batch_size=32) as operator:
        pids = operator.worker_pids()
        before = []
        for pid in pids:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            before.append(_proc_status_kib(pid, "VmRSS"))
        operator.spectrum(steps, 1)
        peaks = [_proc_status_kib(pid, "VmHWM") - base for pid, base in zip(pids, before, strict=True)]
        share = steps * -(-operator.size // num_workers) * 4 / 2**20
    return [(peak / 1024, share) for peak in peaks]


def memory_rows(steps: int) -> list[str]:
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        gangs = {k: basis_memory(k, steps) for k in (1, 2)}
    finally:
        ray.shutdown()
    lines = [f"{'MLP 784-2000-2000-10, ' + str(steps) + ' steps':<40} {'worker':>6} {'peak MiB':>9} {'basis MiB':>9}"]
    for k, workers in gangs.items():
        for rank, (peak, share) in enumerate(workers):
            lines.append(f"{'  k = ' + str(k):<40} {rank:>6} {peak:>9.0f} {share:>9.0f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", choices=("speed", "memory"))
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.only != "speed":
        print("\n".join(memory_rows(args.steps)))
    if args.only == "memory":
        return
    rows = [
        *measure("MLP 784-100-10", mlp(), args.steps, args.repeats, args.device),
        *measure("CNN 2 conv + BN (eval)", bn_cnn(), args.steps, args.repeats, args.device),
    ]
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"{args.steps} Lanczos steps on one batch of 256, fastest of {args.repeats}")
    installed = installed_peers()
    missing = [label for label in PEERS if label not in installed]
    if missing:
        print(f"not installed, so no rows: {', '.join(missing)} (see this script's docstring)")
    print(f"{'measurement':<66} {'ours s':>8} {'base s':>8} {'ratio':>7}  target")
    for label, ours, base, target in rows:
        print(f"{label:<66} {ours:>8.3f} {base:>8.3f} {ours / base:>7.3f}  {target}")


if __name__ == "__main__":
    main()
