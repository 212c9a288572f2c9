"""What a trial costs beyond its training, against a stock `mlflow server`: tracking requests (counted from the
server's access log, by endpoint) and slot time per trial.

Runs `sweep run` over N trivial trials (digits, a 16-unit MLP, 2 epochs, one per seed) on a local Ray with
`--slots` trial slots, then prints:
- requests per trial and per trial-epoch, by endpoint (the server's own log is the count);
- slot time per trial beyond training: (wall x slots - sum of the trials' training time) / trials, where a trial's
  training time is its epochs times the time between its logged epochs (metric timestamps), which includes its
  evaluation and per-epoch tracking;
- the same figure in steady state: from the first run's creation to the last run's end, which leaves out the
  sweep's fixed start-up and shutdown (Python and Ray start, planning, the summary), paid once per sweep;
- the time from the command to the first run's creation (a run is created as its trial is submitted);
- the driver's (the `sweep` process's) peak resident memory, and the time `sweep status` of the sweep takes;
- with --per-epoch, requests per trial-epoch in steady state and per trial outside its epochs, from a second sweep
  of the same trials with three times the epochs (the difference is all epochs).

With --one-step every trial trains one step (one epoch of one 128-example batch), the issue's 10,000-point case:

    python benchmarks/overhead_bench.py [--trials 16] [--slots 2] [--epochs 2] [--per-epoch]
    python benchmarks/overhead_bench.py --trials 10000 --one-step
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tracking_servers import StockServer, sqlite_server  # noqa: E402 - the tests' stock server, started as MLflow's docs do

REQUEST = re.compile(r'"(GET|POST|DELETE|PUT|PATCH) (/[^ ?"]*)')


def count_requests(log: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for method, path in REQUEST.findall(log):
        if path != "/health":
            endpoint = re.sub(r"/mlflow-artifacts/artifacts/.*", "/mlflow-artifacts/artifacts/*", path)
            counts[f"{method} {endpoint.replace('/api/2.0/mlflow', '').replace('/ajax-api/2.0/mlflow', '')}"] += 1
    return counts


def _training_s(client: MlflowClient, run_id: str, epochs: int) -> float:
    stamps = sorted(m.timestamp for m in client.get_metric_history(run_id, "test_acc"))
    return epochs * (stamps[-1] - stamps[0]) / 1000 / max(epochs - 1, 1)


@dataclass(frozen=True)
class SweepFigures:
    wall: float
    training: float
    first_start: float
    steady: float
    counts: collections.Counter[str]
    driver_peak_mib: float
    status_s: float
    # From the last trial run's end to the command's exit: the end-of-sweep read, summary and table.
    tail: float


def run_sweep(server: StockServer, scratch: str, experiment: str, trials: int, epochs: int, slots: int,
              one_step: bool = False) -> SweepFigures:
    before = len(server.log_path.read_text())
    sweep = str(Path(sys.executable).with_name("sweep"))
    where = [f"tracking.uri={server.uri}", f"tracking.experiment={experiment}"]
    length = ["trainer.epochs=1", "dataset.subsample=128", "trainer.batch_size=128"] if one_step \
        else [f"trainer.epochs={epochs}"]
    command = [sweep, "run", "-m", f"trainer.seed=range(0,{trials})", "dataset=digits", "model.hidden_sizes=[16]",
               *length, f"cluster.local_num_cpus={slots}", "cluster.num_cpus=1", *where]
    env = {**os.environ, "RAY_ADDRESS": ""}
    start = time.time()
    result = subprocess.run(command, cwd=scratch, capture_output=True, text=True, env=env)
    wall = time.time() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The largest child waited for so far: the `sweep` process (the server is waited for only when it stops).
    driver_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    # Settle: the access log is written as requests end.
    time.sleep(1.0)
    counts = count_requests(server.log_path.read_text()[before:])
    sweep_id = re.search(r"sweep ([\w-]+):", result.stdout).group(1)
    status_start = time.time()
    status = subprocess.run([sweep, "status", sweep_id, *where], cwd=scratch, capture_output=True, text=True, env=env)
    status_s = time.time() - status_start
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-3000:]
    client = MlflowClient(server.uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.kind = 'trial'",
                              max_results=10000)
    assert len(runs) == trials
    # One epoch leaves no interval between logged epochs to time: its training counts as overhead.
    training = sum(_training_s(client, r.info.run_id, epochs) for r in runs) if epochs > 1 else 0.0
    first_start = min(r.info.start_time for r in runs) / 1000 - start
    steady = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    tail = start + wall - max(r.info.end_time for r in runs) / 1000
    return SweepFigures(wall, training, first_start, steady, counts, driver_peak_mib, status_s, tail)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-epoch", action="store_true",
                        help="also run the trials for 3x the epochs, to split requests per epoch from per trial")
    parser.add_argument("--one-step", action="store_true", help="trials train one step (one epoch of one batch)")
    args = parser.parse_args()
    if args.one_step:
        args.epochs = 1
    with tempfile.TemporaryDirectory(prefix="overhead-") as scratch:
        server = sqlite_server(Path(scratch) / "server")
        try:
            sweep = run_sweep(server, scratch, "overhead", args.trials, args.epochs, args.slots, args.one_step)
            longer = run_sweep(server, scratch, "overhead-longer", args.trials, 3 * args.epochs, args.slots) \
                if args.per_epoch else None
        finally:
            server.stop()
    total = sum(sweep.counts.values())
    print(f"{args.trials} trivial trials x {args.epochs} epochs on {args.slots} slots: wall {sweep.wall:.1f} s")
    print(f"slot time per trial beyond training:    {(sweep.wall * args.slots - sweep.training) / args.trials:.3f} s")
    print(f"  in steady state (first run to last):   {(sweep.steady * args.slots - sweep.training) / args.trials:.3f} s"
          f" ({sweep.steady:.1f} s of the wall)")
    print(f"first run created after:                 {sweep.first_start:.1f} s")
    print(f"command ran on after the last run ended: {sweep.tail:.1f} s")
    print(f"driver peak memory:                      {sweep.driver_peak_mib:.0f} MiB")
    print(f"`sweep status` of the sweep:             {sweep.status_s:.1f} s")
    print(f"tracking requests: {total} = {total / args.trials:.1f} per trial = "
          f"{total / (args.trials * args.epochs):.1f} per trial-epoch")
    for endpoint, n in sweep.counts.most_common():
        print(f"  {n / args.trials:6.2f} per trial  {endpoint}")
    if longer is not None:
        extra_epochs = args.trials * 2 * args.epochs
        per_epoch = (sum(longer.counts.values()) - total) / extra_epochs
        print(f"the same trials with {3 * args.epochs} epochs: {sum(longer.counts.values()) / args.trials:.1f} per trial; "
              f"so {per_epoch:.2f} per trial-epoch in steady state and "
              f"{total / args.trials - args.epochs * per_epoch:.1f} per trial outside its epochs (the intercept of that line)")
        for endpoint in sorted(set(longer.counts) | set(sweep.counts)):
            if longer.counts[endpoint] != sweep.counts[endpoint]:
                print(f"  {(longer.counts[endpoint] - sweep.counts[endpoint]) / extra_epochs:6.2f} per trial-epoch  "
                      f"{endpoint}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
