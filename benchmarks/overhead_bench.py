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
- the time from the command to the first run's creation.

    python benchmarks/overhead_bench.py [--trials 16] [--slots 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tracking_servers import sqlite_server  # noqa: E402 - the tests' stock server, started as MLflow's docs do

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overhead-") as scratch:
        server = sqlite_server(Path(scratch) / "server")
        try:
            before = len(server.log_path.read_text())
            command = [str(Path(sys.executable).with_name("sweep")), "run", "-m", f"trainer.seed=range(0,{args.trials})",
                       "dataset=digits", "model.hidden_sizes=[16]", f"trainer.epochs={args.epochs}",
                       f"cluster.local_num_cpus={args.slots}", "cluster.num_cpus=1", f"tracking.uri={server.uri}",
                       "tracking.experiment=overhead"]
            start = time.time()
            result = subprocess.run(command, cwd=scratch, capture_output=True, text=True,
                                    env={**os.environ, "RAY_ADDRESS": ""})
            wall = time.time() - start
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            client = MlflowClient(server.uri)
            experiment = client.get_experiment_by_name("overhead").experiment_id
            runs = client.search_runs([experiment], "tags.kind = 'trial'", max_results=10000)
            assert len(runs) == args.trials
            # Settle: the access log is written as requests end.
            time.sleep(1.0)
            counts = count_requests(server.log_path.read_text()[before:])
            training = sum(_training_s(client, r.info.run_id, args.epochs) for r in runs)
        finally:
            server.stop()
    first_start = min(r.info.start_time for r in runs) / 1000 - start
    steady = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    total = sum(counts.values())
    trial_epochs = args.trials * args.epochs
    print(f"{args.trials} trivial trials x {args.epochs} epochs on {args.slots} slots: wall {wall:.1f} s")
    print(f"slot time per trial beyond training:    {(wall * args.slots - training) / args.trials:.3f} s")
    print(f"  in steady state (first run to last):   {(steady * args.slots - training) / args.trials:.3f} s"
          f" ({steady:.1f} s of the wall)")
    print(f"first run created after:                 {first_start:.1f} s")
    print(f"tracking requests: {total} = {total / args.trials:.1f} per trial = {total / trial_epochs:.1f} per trial-epoch")
    for endpoint, n in counts.most_common():
        print(f"  {n / args.trials:6.2f} per trial  {endpoint}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
