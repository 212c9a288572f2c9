"""`sweep status` of a large sweep: one read of MLflow and one table, as the sweep grows (goal: under 10 s at 10,000).

Records a sweep of 1,000 trial runs (the baseline), then one of ``--runs`` (10,000 by default), in a fresh SQLite
store, through the sweep's own writer (``SweepTracker.open_trial_run``: tags, params, the config artifact), each then
ended FINISHED with an epoch and final metrics, as a finished trial leaves it. The trials are not trained: what is
measured is the reading. For each size it times the read of every run alone (in process), then the whole
`sweep status SWEEP` command (a new process: interpreter start, imports, the read, the table) twice: first with no
status summary on the parent run (it reads every run, then keeps the summary, as the end of `sweep run` does), then
with it (orchestrator/status_summary.py). It prints the per-run ratio of the large sweep to the baseline (1.0: the
command grows linearly).

    python benchmarks/status_bench.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from mlflow.entities import Metric, RunTag

from orchestrator.planning import plan_sweep
from orchestrator.tracking import SweepRecord, SweepTracker
from workers.run_status import set_run_status
from workers.tracking_endpoint import TrackingEndpoint
from workers.vocabulary import EPOCH_TAG, RunStatus

BASELINE = 1000
HOUR_MS = 3_600_000
EXPERIMENT = "status-bench"


def record_sweep(uri: str, sweep_id: str, runs: int) -> None:
    """``runs`` finished trial runs of one sweep, written as `sweep run` writes them (one trial's config for all),
    ended over the hour before now: a sweep that finished a while ago, whose runs a status summary need not read
    again (those that ended within the summary's clock margin would be)."""
    tracker = SweepTracker(TrackingEndpoint(uri), EXPERIMENT)
    config = plan_sweep(["dataset=digits", "model.hidden_sizes=[16]", "trainer.epochs=1"], multirun=False).trials[0].config
    parent = tracker.ensure_parent(sweep_id, SweepRecord(("dataset=digits",), True, ("trainer.seed",), {}))
    now = int(time.time() * 1000)
    for seed in range(runs):
        run_id = tracker.create_trial_run(parent, sweep_id, f"{sweep_id}-{seed:05d}", (f"trainer.seed={seed}",),
                                          replace(config, trainer=replace(config.trainer, seed=seed)))
        tracker.client.log_batch(run_id, metrics=[Metric("test_acc", 0.9, now, 1), Metric("train_loss", 0.3, now, 1)],
                                 tags=[RunTag(EPOCH_TAG, "1")])
        set_run_status(tracker.client, run_id, RunStatus.FINISHED, end_time=now - HOUR_MS + seed * HOUR_MS // runs)
    set_run_status(tracker.client, parent, RunStatus.FINISHED, end_time=now - HOUR_MS // 2)


def time_status(uri: str, sweep_id: str, runs: int) -> tuple[float, float, float]:
    """Seconds for the read of every run alone, for the command without a summary, and with one."""
    start = time.perf_counter()
    assert len(SweepTracker(TrackingEndpoint(uri), EXPERIMENT).trial_runs(sweep_id)) == runs
    read_s = time.perf_counter() - start
    return read_s, time_command(uri, sweep_id, runs), time_command(uri, sweep_id, runs)


def time_command(uri: str, sweep_id: str, runs: int) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).with_name("sweep")), "status", sweep_id,
                             f"tracking.experiment={EXPERIMENT}"], env=env, capture_output=True, text=True)
    command_s = time.perf_counter() - start
    # Beyond 200 trials the command counts the states and lists the trials not done: none here.
    assert result.returncode == 0 and f"{runs} trial(s): {runs} finished" in result.stdout, result.stderr[-2000:]
    return command_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)  # the SQLite store's artifacts go under ./mlruns
        uri = f"sqlite:///{directory}/mlflow.db"
        for runs in (BASELINE, args.runs):
            sweep_id = f"bench{runs}"
            start = time.perf_counter()
            record_sweep(uri, sweep_id, runs)
            record_s = time.perf_counter() - start
            rows.append((runs, record_s, *time_status(uri, sweep_id, runs)))
    print(f"{'runs':>6} {'record s':>9} {'read s':>8} {'status s, no summary':>21} {'status s, summary':>18}"
          "  (status goal: < 10 s at 10,000)")
    for runs, record_s, read_s, whole_s, summary_s in rows:
        print(f"{runs:>6} {record_s:>9.1f} {read_s:>8.2f} {whole_s:>21.2f} {summary_s:>18.2f}")
    (base, *_, base_whole, base_summary), (large, *_, large_whole, large_summary) = rows
    for label, large_s, base_s in (("no summary", large_whole, base_whole), ("summary", large_summary, base_summary)):
        print(f"per-run ratio of `sweep status` ({label}), {large} against {base} runs: "
              f"{(large_s / large) / (base_s / base):.2f}")


if __name__ == "__main__":
    main()
