"""compute_spectrum and its settings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workers.curvature import GGNOperator, SpectrumSettings, compute_spectrum, slq
from workers.curvature.job import subsample


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # The sweep's own rules for its spectrum group (workers/config_rules.py), so one message either way.
        ("steps", 1, "spectrum.steps=1: must be an integer >= 2"),
        ("steps", 2.5, "spectrum.steps=2.5: must be an integer >= 2"),
        ("num_vectors", True, "spectrum.num_vectors=True: must be an integer >= 1"),
        ("seed", -1, r"spectrum.seed=-1: must be an integer in \[0, 4294967295\]"),
        ("distribution", "normal", "spectrum.distribution=normal: must be rademacher or gaussian"),
        ("operator", "fisher", "spectrum.operator=fisher: must be hessian or ggn"),
        ("bn_mode", "batch", "spectrum.bn_mode=batch: must be train or eval"),
        ("dtype", "float16", "spectrum.dtype=float16: must be float32 or float64"),
        ("num_workers", 0, "spectrum.num_workers=0: must be an integer >= 1"),
        ("gpus_per_worker", -1, "spectrum.gpus_per_worker=-1: must be a number >= 0"),
        ("cpus_per_worker", 0, "spectrum.cpus_per_worker=0: must be a number > 0"),
        ("max_samples", 0, "spectrum.max_samples=0: must be null or an integer >= 1"),
        ("batch_size", None, "spectrum.batch_size=null: the settings take the resolved batch size"),
        ("device", "tpu", "device=tpu: must be one of auto, cpu, cuda"),
        ("basis_device", "cuda", "spectrum.basis_device=cuda: must be null or cpu"),
    ],
)
def test_bad_settings_name_the_value_and_what_is_allowed(field, value, message):
    with pytest.raises(ValueError, match=f"^{message}".replace("(", r"\(").replace(")", r"\)")):
        SpectrumSettings(**{field: value})


def test_sharded_device_must_agree_with_gpus_per_worker():
    with pytest.raises(ValueError, match="device='cuda' contradicts gpus_per_worker=0 with num_workers=2"):
        SpectrumSettings(num_workers=2, device="cuda")
    SpectrumSettings(num_workers=2, device="cpu", cpus_per_worker=0.5)


def test_subsample_is_seeded_and_keeps_data_order():
    inputs, targets = torch.arange(100.0)[:, None], torch.arange(100)
    x, y = subsample(inputs, targets, 10, seed=3)
    assert torch.equal(x[:, 0].long(), y) and (y.diff() > 0).all() and len(y) == 10
    assert torch.equal(subsample(inputs, targets, 10, seed=3)[1], y)
    assert not torch.equal(subsample(inputs, targets, 10, seed=4)[1], y)
    assert subsample(inputs, targets, None, seed=3)[1] is targets


def test_compute_spectrum_in_process_is_slq_on_the_chosen_operator(ref):
    model = ref.make_model("bn_cnn")
    [(inputs, targets)] = ref.make_data("bn_cnn", sizes=(30,))
    settings = SpectrumSettings(steps=6, num_vectors=2, seed=1, operator="ggn", bn_mode="train", dtype="float64",
                                max_samples=20, batch_size=8, device="cpu")
    result = compute_spectrum(model, F.cross_entropy, inputs, targets, settings)
    x, y = subsample(inputs, targets, 20, seed=1)
    expected = slq(GGNOperator(model, F.cross_entropy, (x, y), bn_mode="train", dtype=torch.float64, batch_size=8),
                   steps=6, num_vectors=2, seed=1)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(result.alphas, expected.alphas, strict=True))


def test_basis_on_cpu_gives_the_same_spectrum(ref):
    model = ref.make_model("bn_cnn")
    [(inputs, targets)] = ref.make_data("bn_cnn", sizes=(12,))
    common = {"steps": 6, "num_vectors": 2, "dtype": "float64", "device": "auto"}
    on_device, on_cpu = (
        compute_spectrum(model, F.cross_entropy, inputs, targets, SpectrumSettings(basis_device=where, **common))
        for where in (None, "cpu")
    )
    for a, b in zip(on_device.alphas + on_device.betas, on_cpu.alphas + on_cpu.betas, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)


def test_basis_device_reaches_the_settings_from_a_composed_config():
    from orchestrator.planning import plan_sweep
    from workers.spectrum_job import settings_from

    [trial] = plan_sweep(["dataset=digits", "spectrum=slq", "spectrum.basis_device=cpu"], multirun=False).trials
    assert settings_from(trial.config).basis_device == "cpu"
    [trial] = plan_sweep(["dataset=digits", "spectrum=slq"], multirun=False).trials
    assert settings_from(trial.config).basis_device is None


def test_compute_spectrum_over_two_ray_workers_equals_in_process(ray_session, ref):
    model = ref.make_model("tanh_mlp")
    [(inputs, targets)] = ref.make_data("tanh_mlp", sizes=(41,))
    common = {"steps": 8, "num_vectors": 2, "dtype": "float64", "batch_size": 10}
    local = compute_spectrum(model, F.cross_entropy, inputs, targets, SpectrumSettings(**common))
    sharded = compute_spectrum(model, F.cross_entropy, inputs, targets, SpectrumSettings(num_workers=2, **common))
    for a, b in zip(local.ritz_values, sharded.ritz_values, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
