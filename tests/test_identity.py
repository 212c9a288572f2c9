"""Trial and sweep identity: what is computed, never where it runs."""

from __future__ import annotations

import copy

from orchestrator.identity import flatten, sweep_id, trial_id
from orchestrator.planning import plan_sweep


def _config() -> dict:
    return copy.deepcopy(plan_sweep(["dataset=digits"], multirun=False).trials[0].config)


def test_trial_id_ignores_where_to_run_keys() -> None:
    base = _config()
    moved = _config()
    moved["cluster"]["address"] = "ray://elsewhere:10001"
    moved["cluster"]["num_gpus"] = 1
    moved["tracking"]["uri"] = "http://elsewhere:5000"
    moved["trainer"]["device"] = "cuda"
    moved["checkpoint"]["every"] = 7
    assert trial_id(moved) == trial_id(base)


def test_trial_id_follows_what_is_computed() -> None:
    base = _config()
    for group, key, value in [("optimizer", "lr", 0.5), ("trainer", "seed", 3), ("dataset", "name", "mnist5k"),
                              ("trainer", "epochs", 9)]:
        changed = _config()
        changed[group][key] = value
        assert trial_id(changed) != trial_id(base), (group, key)


def test_sweep_id_is_the_name_or_ignores_the_swept_values() -> None:
    base = _config()
    assert sweep_id("my-sweep", base, ["optimizer.lr"]) == "my-sweep"
    assert sweep_id(None, base, ["optimizer.lr"]) == sweep_id(None, copy.deepcopy(base), ["optimizer.lr"])
    assert sweep_id(None, base, ["optimizer.lr"]) != sweep_id(None, base, ["optimizer.lr", "trainer.seed"])


def test_flatten_makes_dotted_params() -> None:
    assert flatten({"optimizer": {"lr": 0.1, "betas": [0.9, 0.999]}, "x": None}) == {
        "optimizer.lr": "0.1", "optimizer.betas": "[0.9, 0.999]", "x": "None"}
