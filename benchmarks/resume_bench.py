"""How long `sweep resume` takes to decide what to run for a sweep of 64 finished trials (target: under 2 s).

Records a 64-trial sweep in a local MLflow server's store (runs created as `sweep run` creates them, then marked
FINISHED without training), then times (a) the decision alone, in process: re-plan from the parent run's record
and match every trial to its run, and (b) the whole `sweep resume` command, which finds nothing to run.

    python benchmarks/resume_bench.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.mlflow_server import LocalMlflowServer
from orchestrator.planning import plan_sweep
from orchestrator.sweep_book import SweepBook, SweepOrder
from orchestrator.settings import apply_local_only_env
from orchestrator.tracking import SweepTracker
from workers.tracking_endpoint import TrackingEndpoint

GRID = ["optimizer.lr=0.01,0.02,0.03,0.05", "optimizer.weight_decay=0,1e-5,1e-4,1e-3", "trainer.seed=range(0,4)",
        "sweep.name=bench64"]


def main() -> None:
    apply_local_only_env()
    with tempfile.TemporaryDirectory() as store, LocalMlflowServer(Path(store)) as uri:
        experiment = "resume-bench"
        endpoint = TrackingEndpoint(uri)
        tracker = SweepTracker(endpoint, experiment)
        book = SweepBook(SweepOrder(plan_sweep(GRID + [f"tracking.experiment={experiment}"], True), endpoint, {}))
        book.open()
        for trial in book.order.plan.trials:
            tracker.client.set_terminated(book.prepare(trial).run_id, "FINISHED")

        start = time.perf_counter()
        record = tracker.sweep_record("bench64")
        assert record is not None
        plan = plan_sweep([*record.arguments, "sweep.name=bench64"], record.multirun)
        decided = SweepBook(SweepOrder(plan, endpoint, {}))
        decided.open()
        finished = decided.finished_before(plan.trials)
        decide_s = time.perf_counter() - start
        assert len(plan.trials) == 64 and len(finished) == 64

        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        start = time.perf_counter()
        result = subprocess.run([str(Path(sys.executable).with_name("sweep")), "resume", "bench64",
                                 f"tracking.experiment={experiment}"], env=env, capture_output=True, text=True)
        command_s = time.perf_counter() - start
        assert result.returncode == 0 and "64 trial(s), 0 to run" in result.stdout, result.stdout + result.stderr

    print("sweep of 64 finished trials")
    print(f"decide what to run (in process):      {decide_s:6.2f} s  (target < 2 s, ratio {decide_s / 2:.2f} of target)")
    print(f"`sweep resume` command, end to end:   {command_s:6.2f} s  (includes interpreter start and imports)")


if __name__ == "__main__":
    main()
