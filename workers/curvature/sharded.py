"""One curvature operator over a gang of Ray actors, each with a model replica and a shard of the data.

Each actor computes its shard's product weighted by its share n_i / N; a torch.distributed all-reduce (NCCL
on GPUs, Gloo on CPUs) sums them, so the driver sees the single-process full-data operator and Lanczos runs
unchanged on rank 0's result. `spectrum()` instead runs SLQ inside the gang with the Lanczos basis sliced
over the actors, so that no process holds more than 1/k of it.
"""

from __future__ import annotations

import copy
import math
import os
import socket
from collections.abc import Sequence
from types import TracebackType

import ray
import torch
import torch.distributed as dist
from ray.actor import ActorHandle
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from torch import nn

from workers.curvature.kinds import OPERATOR_KINDS
from workers.curvature.layout import Sliced
from workers.curvature.network import BN_MODES, FLOAT_DTYPES, LossFn, select_parameters
from workers.curvature.operators import CurvatureOperator
from workers.curvature.result import SpectrumResult
from workers.curvature.sliced import SlicedOperator
from workers.curvature.slq import Progress, SLQState, check_slq_arguments, slq
from workers.curvature.validation import require_choice, require_int, require_number


def shard_bounds(num_samples: int, batch_size: int | None, num_workers: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) shards made of whole batches, as balanced as whole batches allow.

    Cutting only between batches means every batch is the one a single process would see, so the sum is the
    single-process operator even where batches interact (BatchNorm in train mode).
    """
    batch_size = batch_size or num_samples
    num_batches = math.ceil(num_samples / batch_size)
    if num_batches < num_workers:
        raise ValueError(
            f"num_workers={num_workers} exceeds the {num_batches} batch(es) of batch_size={batch_size} in "
            f"{num_samples} samples; lower batch_size or num_workers"
        )
    bounds = []
    start_batch = 0
    for rank in range(num_workers):
        stop_batch = start_batch + num_batches // num_workers + (rank < num_batches % num_workers)
        bounds.append((start_batch * batch_size, min(stop_batch * batch_size, num_samples)))
        start_batch = stop_batch
    return bounds


@ray.remote
class _ShardWorker:
    """One rank: the operator on its shard, scaled by its share of the samples."""

    def __init__(
        self,
        kind: str,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        share: float,
        threads: int,
        use_gpu: bool,
        operator_options: dict[str, object],
    ) -> None:
        # Ray starts workers with one torch thread; the actor owns the CPUs its bundle reserved.
        torch.set_num_threads(threads)
        device = torch.device("cuda" if use_gpu else "cpu")
        self._operator = OPERATOR_KINDS[kind](model, loss_fn, (inputs, targets), device=device, **operator_options)
        self._share = share
        self._rank = -1
        self._world_size = 0

    def rendezvous_address(self) -> tuple[str, int]:
        """This node's address and a port free on it, for the process group's TCP store."""
        address = ray.util.get_node_ip_address()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
            return address, probe.getsockname()[1]

    def join(self, rank: int, world_size: int, address: str, port: int, backend: str) -> None:
        dist.init_process_group(backend, init_method=f"tcp://{address}:{port}", rank=rank, world_size=world_size)
        self._rank = rank
        self._world_size = world_size

    def matvec(self, v: torch.Tensor) -> torch.Tensor | None:
        product = self._operator.matvec(v).mul_(self._share)
        dist.all_reduce(product)
        return product.cpu() if self._rank == 0 else None

    def spectrum(
        self, steps: int, num_vectors: int, seed: int, distribution: str, basis_device: str | None,
        vectors: range | None = None,
    ) -> SpectrumResult | None:
        """SLQ with this rank's slice of the basis; every rank computes the same result, rank 0 returns it."""
        layout = Sliced(self._operator.size, self._rank, self._world_size, self._operator.device)
        sliced = SlicedOperator(self._operator, self._share, layout)
        result = slq(sliced, steps, num_vectors, seed, distribution, basis_device=basis_device, vectors=vectors)
        return result if self._rank == 0 else None

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


class ShardedCurvatureOperator(CurvatureOperator):
    """The Hessian (or with kind="ggn" the GGN) of the mean loss over (inputs, targets), sharded over
    `num_workers` Ray actors gang-scheduled in one placement group.

    Ray must already be initialised (the caller decides which cluster). The operator lives on the driver's
    CPU: matvec ships v to every actor and returns rank 0's all-reduced product. Call `shutdown()` or use it
    as a context manager to kill the actors and free the placement group.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        num_workers: int,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        kind: str = "hessian",
        bn_mode: str = "eval",
        params: str | Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        require_int("num_workers", num_workers, 1)
        require_number("cpus_per_worker", cpus_per_worker, 0, inclusive=False)
        require_number("gpus_per_worker", gpus_per_worker, 0)
        require_choice("kind", kind, tuple(OPERATOR_KINDS))
        # Checked here too, so that a bad value fails on the driver rather than inside every actor.
        require_choice("bn_mode", bn_mode, BN_MODES)
        require_choice("dtype", dtype, FLOAT_DTYPES)
        if len(inputs) != len(targets):
            raise ValueError(f"inputs hold {len(inputs)} samples but targets hold {len(targets)}")
        if not ray.is_initialized():
            raise RuntimeError("Ray is not initialised; call ray.init() before building a ShardedCurvatureOperator")
        names = set(select_parameters(model, params))
        self._size = sum(p.numel() for n, p in model.named_parameters() if n in names)
        self._dtype = dtype
        self._workers: list[ActorHandle] = []
        bounds = shard_bounds(len(inputs), batch_size, num_workers)
        bundle = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
        self._group = placement_group([bundle] * num_workers, strategy="PACK")
        try:
            self._await_group(bundle, num_workers, ready_timeout_s)
            model_ref = ray.put(copy.deepcopy(model).cpu())
            options = {"bn_mode": bn_mode, "params": params, "dtype": dtype, "batch_size": batch_size}
            self._workers = [
                _ShardWorker.options(
                    num_cpus=cpus_per_worker,
                    num_gpus=gpus_per_worker,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        self._group, placement_group_bundle_index=rank
                    ),
                ).remote(
                    kind, model_ref, loss_fn, inputs[start:stop].clone(), targets[start:stop].clone(),
                    (stop - start) / len(inputs), max(1, int(cpus_per_worker)), gpus_per_worker > 0, options,
                )
                for rank, (start, stop) in enumerate(bounds)
            ]
            address, port = ray.get(self._workers[0].rendezvous_address.remote())
            backend = "nccl" if gpus_per_worker > 0 else "gloo"
            ray.get([w.join.remote(rank, num_workers, address, port, backend) for rank, w in enumerate(self._workers)])
        except BaseException:
            self.shutdown()
            raise

    @property
    def size(self) -> int:
        return self._size

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if not self._workers:
            raise RuntimeError("this ShardedCurvatureOperator has been shut down")
        if v.shape != (self.size,):
            raise ValueError(f"v has shape {tuple(v.shape)}; this operator takes vectors of shape ({self.size},)")
        shared = ray.put(v.detach().to("cpu", self._dtype))
        # Every rank's result is awaited so that an actor's error surfaces here, not as a hang next step.
        return ray.get([w.matvec.remote(shared) for w in self._workers])[0]

    def spectrum(
        self,
        steps: int,
        num_vectors: int,
        seed: int = 0,
        distribution: str = "rademacher",
        *,
        basis_device: str | None = None,
        progress: Progress | None = None,
    ) -> SpectrumResult:
        """What `slq(self, ...)` returns, computed inside the gang: each worker holds 1/num_workers of every
        Lanczos vector (steps x P / k numbers instead of steps x P on the driver) and only whole vectors for
        the duration of a product. basis_device="cpu" keeps those slices out of GPU memory.

        With `progress` the gang computes one seed vector at a time and each finished one is saved: a killed job
        continues at the first unfinished vector (the basis is sliced over the gang, so a vector's own progress
        is not kept)."""
        if not self._workers:
            raise RuntimeError("this ShardedCurvatureOperator has been shut down")
        check_slq_arguments(steps, num_vectors, seed, distribution)
        if progress is None:
            return self._gang_spectrum(steps, num_vectors, seed, distribution, basis_device, None)
        runs = list((progress.load() or SLQState()).completed)
        for index in range(len(runs), num_vectors):
            one = self._gang_spectrum(steps, num_vectors, seed, distribution, basis_device, range(index, index + 1))
            runs.extend(one.runs)
            progress.save(SLQState(tuple(runs)))
        return SpectrumResult(runs=tuple(runs), size=self.size, steps=steps, seed=seed, distribution=distribution)

    def _gang_spectrum(self, steps: int, num_vectors: int, seed: int, distribution: str, basis_device: str | None,
                       vectors: range | None) -> SpectrumResult:
        args = (steps, num_vectors, seed, distribution, basis_device, vectors)
        return ray.get([w.spectrum.remote(*args) for w in self._workers])[0]

    def worker_nodes(self) -> tuple[str, ...]:
        """Ray node ids of the gang's actors, by rank: where the placement group put them."""
        return tuple(ray.get([w.node_id.remote() for w in self._workers]))

    def worker_pids(self) -> list[int]:
        """Process ids of the gang's actors, by rank: what a memory probe of a worker looks at."""
        return ray.get([w.pid.remote() for w in self._workers])

    def shutdown(self) -> None:
        """Kill the actors and remove the placement group; safe to call twice."""
        for worker in self._workers:
            ray.kill(worker)
        self._workers = []
        if self._group is not None:
            remove_placement_group(self._group)
            self._group = None

    def __enter__(self) -> ShardedCurvatureOperator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    def _await_group(self, bundle: dict[str, float], num_workers: int, timeout_s: float) -> None:
        ready, _ = ray.wait([self._group.ready()], timeout=timeout_s)
        if not ready:
            raise RuntimeError(
                f"Ray could not reserve {num_workers} workers of {bundle} within {timeout_s:g} s; the cluster "
                f"has {ray.cluster_resources()} in all, and a task that calls this holds its own share"
            )
