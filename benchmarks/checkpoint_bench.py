"""What a WRN-28x10-sized checkpoint adds to an epoch: stored before the next epoch (blocking, the baseline) against
stored in the background while the next epoch trains (what a trial does).

The checkpoint holds weights, the optimizer's momentum and the iterate average of a 36.5M-parameter network
(3 x 36.5M float32, about 440 MB); it goes to a stock `mlflow server` (proxied artifacts) on this machine, with
`checkpoint.keep=2` pruning. An "epoch" is a fixed amount of matrix arithmetic, timed alone first. Printed: the
time per epoch in each mode, what the checkpoint adds to it, and the ratio of the two additions.

    python benchmarks/checkpoint_bench.py [--params 36500000] [--epochs 4] [--epoch-s 6]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tracking_servers import sqlite_server  # noqa: E402 - the tests' stock server, started as MLflow's docs do

from workers.run_artifacts import RunArtifacts  # noqa: E402
from workers.training.checkpoint import TrainingState  # noqa: E402
from workers.training.checkpoint_store import CheckpointStore  # noqa: E402


def _epoch_of_work(seconds: float) -> Callable[[], None]:
    """A fixed amount of arithmetic that takes about ``seconds`` on this machine when nothing else runs."""
    a = torch.randn(512, 512)
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < 0.5:
        a @ a
        reps += 1
    per_epoch = int(reps * seconds / (time.perf_counter() - start))

    def work() -> None:
        for _ in range(per_epoch):
            a @ a
    return work


def _state(epoch: int, params: int) -> TrainingState:
    weights = {"w": torch.randn(params)}
    return TrainingState(epoch, epoch, weights, {"momentum": {"w": torch.randn(params)}}, {}, {"w": torch.randn(params)})


def _run(client: MlflowClient, uri: str, experiment: str, scratch: Path, args: argparse.Namespace,
         work: Callable[[], None], background: bool) -> float:
    run_id = client.create_run(experiment).info.run_id
    states = [_state(epoch, args.params) for epoch in range(1, args.epochs + 1)]
    start = time.perf_counter()
    with CheckpointStore(RunArtifacts(client, uri, run_id), scratch / run_id, keep=2, empty=True) as store:
        for state in states:
            work()
            store.save(state)
            if not background:
                store.wait()
    return (time.perf_counter() - start) / args.epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=int, default=36_500_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epoch-s", type=float, default=6.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = _epoch_of_work(args.epoch_s)
    start = time.perf_counter()
    for _ in range(2):
        work()
    alone = (time.perf_counter() - start) / 2
    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-") as scratch:
        server = sqlite_server(Path(scratch) / "server")
        try:
            client = MlflowClient(server.uri)
            experiment = client.create_experiment("checkpoint-bench")
            blocking = _run(client, server.uri, experiment, Path(scratch), args, work, background=False)
            background = _run(client, server.uri, experiment, Path(scratch), args, work, background=True)
        finally:
            server.stop()
    size_mb = 3 * args.params * 4 / 1e6
    print(f"checkpoint of {args.params / 1e6:.1f}M parameters x 3 ({size_mb:.0f} MB), {args.epochs} epochs of "
          f"{alone:.2f} s of arithmetic each")
    print(f"  stored before the next epoch:   {blocking:.2f} s per epoch, +{blocking - alone:.2f} s")
    print(f"  stored while the next trains:   {background:.2f} s per epoch, +{background - alone:.2f} s")
    print(f"  ratio of the additions (background / blocking): {(background - alone) / (blocking - alone):.2f}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
