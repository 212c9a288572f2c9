"""The pre-launch rules agree with what the workers do: a config they accept never fails the same way in a worker.

The spectrum job's own checks (SpectrumSettings, the shard layout) run only after training; the rules in
workers/config_rules.py restate them so that a sweep is refused before launch. These tests pin the two together.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from orchestrator.errors import UserError
from orchestrator.planning import plan_sweep
from trial_configs import changed, compose_trial
from workers.config_rules import (SEED_MAX, check_shards, check_spectrum_job, exception_class, is_retryable,
                                  spectrum_device)
from workers.training.config_checks import training_examples


_config = compose_trial


def _accepted(check, *args) -> bool:
    try:
        check(*args)
    except ValueError:
        return False
    return True


def test_seed_range_is_what_numpy_accepts() -> None:
    np.random.seed(SEED_MAX)
    for seed in (-1, SEED_MAX + 1):
        with pytest.raises(ValueError):
            np.random.seed(seed)


@pytest.mark.parametrize(
    ("device", "num_workers", "gpus_per_worker", "basis_device"),
    list(itertools.product(["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"], [1, 2], [0.0, 1.0], [None, "cpu"]))
    + [("cpu", 1, 0.0, "cuda"), ("auto", 2, 0.0, "cuda:0")],
)
def test_spectrum_devices_agree_with_the_spectrum_job(device: str, num_workers: int, gpus_per_worker: float,
                                                      basis_device: str | None) -> None:
    from workers.spectrum_job import settings_from

    config = _config("spectrum=slq", f"spectrum.num_workers={num_workers}", "spectrum.max_samples=null",
                     f"spectrum.gpus_per_worker={gpus_per_worker}")
    config = changed(changed(config, "trainer.device", device), "spectrum.basis_device", basis_device)
    assert _accepted(check_spectrum_job, config) == _accepted(settings_from, config)
    assert spectrum_device(device) in ("auto", "cpu", "cuda") or not _accepted(check_spectrum_job, config)


@pytest.mark.parametrize(("max_samples", "batch_size", "num_workers"),
                         [(None, 1024, 2), (None, 500, 3), (None, 800, 3), (100, 1024, 2), (100, 50, 2),
                          (100, 49, 3), (1, 1, 1), (3, 1, 4)])
def test_shard_layouts_agree_with_the_sharded_operator(max_samples, batch_size: int, num_workers: int) -> None:
    from workers.curvature.sharded import shard_bounds

    config = _config("dataset=digits", "spectrum=slq", f"spectrum.batch_size={batch_size}",
                     f"spectrum.num_workers={num_workers}")
    config = changed(config, "spectrum.max_samples", max_samples)
    samples = min(training_examples(config.dataset), max_samples or math.inf)
    assert _accepted(check_shards, config) == _accepted(shard_bounds, samples, batch_size, num_workers)


@pytest.mark.parametrize(("name", "expected"), [
    ("ConnectionError", ConnectionError), ("TimeoutError", TimeoutError), ("KeyboardInterrupt", KeyboardInterrupt),
    ("urllib.error.URLError", __import__("urllib.error").error.URLError),
    ("json.JSONDecodeError", __import__("json").JSONDecodeError),
    ("ConectionError", None), ("print", None), ("object", None), ("os.path", None), ("os.sep", None),
    ("no_such_module.Error", None), ("json.NoSuchError", None), ("", None), ("1Error", None), ("a..b", None),
])
def test_retry_exceptions_name_exception_classes(name: str, expected) -> None:
    assert exception_class(name) is expected


def test_retries_match_the_listed_classes_and_their_subclasses() -> None:
    assert is_retryable(ConnectionRefusedError("refused"), ["ConnectionError"])
    assert is_retryable(RuntimeError("injected"), ["ValueError", "RuntimeError"])
    assert not is_retryable(ValueError("bad"), ["ConnectionError"])
    assert not is_retryable(ValueError("bad"), [])


@pytest.mark.parametrize("overrides", [
    ["cluster.retry_exceptions=[ConnectionError,urllib.error.URLError]"],
    ["model=vgg", "dataset=cifar10", "dataset.root=/data"],
    ["spectrum=slq", "trainer.device=cuda:1", "spectrum.num_workers=2", "spectrum.gpus_per_worker=0.5"],
    ["spectrum=slq", "spectrum.num_workers=4"],
    ["trainer.seed=4294967295", "dataset.split_seed=0"],
    ['sweep.name="a sweep: lr x wd (v2)"'],
])
def test_good_inputs_still_plan(overrides: list[str]) -> None:
    try:
        plan_sweep(overrides, multirun=False)
    except UserError as error:
        pytest.fail(f"{overrides} refused: {error}")
