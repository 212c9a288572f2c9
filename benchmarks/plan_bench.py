"""Time and memory to plan a large grid: every point composed, validated and identified before any launch.

Plans a seed grid (digits, a 16-unit MLP) of 1,000 points, the baseline, then of ``--points``, in this process, and
prints the time per point of each, their ratio (1.0: planning grows linearly), and the peak resident memory.

    python benchmarks/plan_bench.py [--points 10000]
"""

from __future__ import annotations

import argparse
import resource
import time

from orchestrator.planning import plan_sweep

BASELINE = 1000


def seconds_to_plan(points: int) -> float:
    start = time.perf_counter()
    plan = plan_sweep([f"trainer.seed=range(0,{points})", "dataset=digits", "model.hidden_sizes=[16]",
                       "trainer.epochs=1"], multirun=True)
    assert len(plan.trials) == points
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10_000)
    args = parser.parse_args()
    baseline = seconds_to_plan(BASELINE)
    large = seconds_to_plan(args.points)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{BASELINE} points: {baseline:.1f} s ({1000 * baseline / BASELINE:.2f} ms per point)")
    print(f"{args.points} points: {large:.1f} s ({1000 * large / args.points:.2f} ms per point)")
    print(f"per-point ratio, {args.points} / {BASELINE}: {(large / args.points) / (baseline / BASELINE):.2f}")
    print(f"peak resident memory of the planning process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
