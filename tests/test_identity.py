"""Trial and sweep identity: what is computed, never where it runs."""

from __future__ import annotations

import copy

import pytest

from orchestrator.composition import composer, to_trial_config
from orchestrator.dotted_keys import flatten
from orchestrator.identity import changed_keys, identity_config, sweep_id, trial_id
from workers.training.model_kinds import FORMER_NAMES
from orchestrator.planning import plan_sweep
from workers.trial_config import as_plain


def _config() -> dict:
    """A trial's config as identity sees it: plain values."""
    return as_plain(plan_sweep(["dataset=digits"], multirun=False).trials[0].config)


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


def test_spectrum_settings_are_not_part_of_a_trial_or_its_sweep() -> None:
    """Adding `spectrum=slq` (or changing its settings) to a finished sweep finds the same trials in the same sweep."""
    plain = plan_sweep(["dataset=digits", "optimizer.lr=0.01,0.1"], multirun=True)
    with_spectra = plan_sweep(["dataset=digits", "optimizer.lr=0.01,0.1", "spectrum=slq", "spectrum.steps=12",
                               "spectrum.bn_mode=train", "spectrum.at_epochs=[1]"], multirun=True)
    assert [t.trial_id for t in with_spectra.trials] == [t.trial_id for t in plain.trials]
    assert with_spectra.sweep_id == plain.sweep_id


def test_ids_computed_before_spectra_left_identity_keep_their_values() -> None:
    # Pinned from the commit before: a change here orphans every recorded trial and sweep.
    plan = plan_sweep(["dataset=digits"], multirun=False)
    assert (plan.trials[0].trial_id, plan.sweep_id) == ("755e66a8cecd", "sweep-fa4c699de5")


def test_a_sweep_recorded_with_spectrum_identity_compares_unchanged() -> None:
    base = _config()
    recorded = {**identity_config(base), "spectrum": {"enabled": True, "steps": 80}}
    assert changed_keys(recorded, identity_config(base)) == []
    changed = copy.deepcopy(base)
    changed["optimizer"]["lr"] = 0.5
    assert [k for k, _, _ in changed_keys(recorded, identity_config(changed))] == ["optimizer.lr"]


@pytest.mark.parametrize(("family", "former", "recorded_id"), [
    (["model=vgg", "model.depth=11"], ["model=vgg16", "model.depth=11"], "14562afc8f7c"),
    (["model=preresnet"], ["model=preresnet164"], "b585b1a4119a"),
    (["model=wideresnet"], ["model=wideresnet28x10"], "680cbaf1da1a"),
])
def test_models_named_by_family_keep_the_ids_of_their_former_names(family: list[str], former: list[str],
                                                                   recorded_id: str) -> None:
    """The ids that the former names had before models were named by family (computed then, on cifar10): a sweep
    recorded then replays its former `model=` argument (an alias now) and resumes as the same trials."""
    configs = []
    for overrides in (family, former):
        with composer() as compose:
            configs.append(as_plain(to_trial_config(compose.point([*overrides, "dataset=cifar10", "dataset.root=/data"]))))
    assert [trial_id(config) for config in configs] == [recorded_id, recorded_id]
    now = configs[0]
    recorded = {**now, "model": {**now["model"], "name": FORMER_NAMES[now["model"]["name"]]}}
    assert changed_keys(recorded, now) == [], "a base config recorded with the former name is unchanged"
