"""Run one trial inside a worker: train, evaluate, checkpoint and log every epoch to the trial's MLflow run.

A re-run of the same spec (a Ray retry after the worker died, or ``sweep resume``) continues from the newest
valid checkpoint in the run and logs only the epochs the run does not have yet.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from workers.config_rules import is_retryable
from workers.devices import resolve_device
from workers.ownership import OwnerLost, TrialPruned, check_owned, report_epoch
from workers.placement import task_attempt
from workers.run_logger import RunLogger
from workers.spec import RetryableTrialError, TrialOutcome, TrialSpec, spectrum_epochs
from workers.vocabulary import RunStatus
from workers.training.checkpoint import TrainingState, capture_rng, restore_rng
from workers.training.checkpoint_store import CheckpointStore
from workers.training.data import DatasetSplits, load_dataset
from workers.training.loop import evaluate, train_one_epoch
from workers.training.models import build_model
from workers.training.recipe import Recipe
from workers.trial_config import TrialConfig



def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_trial(spec: TrialSpec) -> TrialOutcome:
    """Train the trial to its last epoch; a trial error ends the run FAILED and is returned, not raised.

    Errors of a class the sweep lists in ``cluster.retry_exceptions`` (or of a subclass) are re-raised as
    :class:`RetryableTrialError` so that Ray retries the task.
    """
    try:
        check_owned(spec.owner, spec.trial_id)
        return _run_owned_trial(spec)
    except OwnerLost:
        return TrialOutcome(spec.trial_id, spec.run_id, RunStatus.KILLED, {}, "cancelled by its owner")


def _run_owned_trial(spec: TrialSpec) -> TrialOutcome:
    logger = RunLogger.for_run(spec.tracking, spec.run_id, spec.config.tracking, spec.artifact_uri)
    # A run created for this task holds nothing on the task's first attempt; a Ray retry reads it back like a
    # resume. Outside Ray (the in-process executor, no owner) a task is never retried.
    attempt = task_attempt()
    fresh = spec.new_run and (attempt == 0 or (attempt is None and spec.owner is None))
    logger.mark_running(new_run=fresh)
    if spec.owner is not None:
        spec.owner.trial_started.remote(spec.trial_id)
    try:
        with logger.beating():
            metrics = _train(spec, logger, fresh)
    except OwnerLost:
        raise
    except TrialPruned as pruned:
        logger.end_pruned(pruned.epoch)
        return TrialOutcome(spec.trial_id, spec.run_id, RunStatus.KILLED, pruned.metrics, str(pruned))
    except Exception as error:  # noqa: BLE001 - any trial error is recorded on the run, then reported
        message = f"{type(error).__name__}: {error}"
        if is_retryable(error, spec.config.cluster.retry_exceptions):
            raise RetryableTrialError(message) from error
        logger.fail(message, traceback.format_exc())
        return TrialOutcome(spec.trial_id, spec.run_id, RunStatus.FAILED, {}, message)
    if spec.config.spectrum.enabled:
        # The run ends when its spectrum job does; a failed job fails the trial, and a resume re-runs it.
        return TrialOutcome(spec.trial_id, spec.run_id, RunStatus.TRAINED, metrics)
    check_owned(spec.owner, spec.trial_id)
    logger.finish()
    return TrialOutcome(spec.trial_id, spec.run_id, RunStatus.FINISHED, metrics)


def _train(spec: TrialSpec, logger: RunLogger, fresh: bool) -> dict[str, float]:
    """``fresh``: the run holds no metrics or checkpoints yet, so none are looked for."""
    cfg = spec.config
    trainer = cfg.trainer
    torch.set_num_threads(max(1, int(cfg.cluster.num_cpus)))
    device = resolve_device(trainer.device)
    seed_everything(trainer.seed)
    splits = load_dataset(cfg.dataset)
    model = build_model(cfg.model, splits.input_shape, splits.num_classes).to(device)
    recipe = Recipe(cfg, model, math.ceil(len(splits.train_targets) / trainer.batch_size))
    generator = torch.Generator().manual_seed(trainer.seed)

    with tempfile.TemporaryDirectory(prefix="trial-") as scratch, CheckpointStore(
        logger.artifacts(), Path(scratch), keep=cfg.checkpoint.keep, protected=spectrum_epochs(cfg),
        empty=fresh, on_stored=logger.record_checkpoint,
    ) as store:
        epoch, step = (0, 0) if fresh else _resume(store, model, recipe, generator)
        logged_through = 0 if fresh else logger.last_logged_epoch()
        if logged_through:
            # Epochs the run already has that this attempt computes again: at most checkpoint.every - 1.
            logger.record_resume(resumed_from=epoch, recomputed=logged_through - epoch)
        metrics: dict[str, float] = {}
        for epoch in range(epoch, trainer.epochs):
            _inject_faults(spec.faults, epoch, model)
            lr = recipe.set_epoch(epoch)
            stats = train_one_epoch(model, recipe, splits, epoch, trainer.batch_size, generator, device, step)
            step += stats.steps
            recipe.after_epoch(epoch)
            metrics = {"train_loss": stats.loss, "train_acc": stats.accuracy, "lr": lr}
            # Built once an epoch: evaluated, and checkpointed for spectra of the averaged weights.
            averaged = recipe.averaged_model(splits.train_inputs)
            metrics.update(_evaluate_all(model, averaged, splits, trainer.eval_batch_size, device))
            if epoch + 1 > logged_through:
                logger.log_epoch(epoch + 1, metrics)
            # The epoch's one call to the owner: go on, stop (cancelled: write nothing more), or pruned. A prune
            # that comes with the last epoch is moot: the trial has done all its work and finishes.
            pruned = report_epoch(spec.owner, spec.trial_id, epoch + 1, metrics.get(cfg.sweep.objective))
            if pruned and epoch + 1 < trainer.epochs:
                raise TrialPruned(epoch + 1, metrics)
            if _checkpoint_due(epoch + 1, cfg):
                # Uploaded while the next epoch trains; its epoch tag rides on a later batch (the last, on flush).
                store.save(TrainingState(epoch + 1, step, model.state_dict(), recipe.state_dict(),
                                         capture_rng(generator), averaged.state_dict() if averaged is not None else None))
    logger.flush()
    return metrics


def _resume(store: "CheckpointStore", model: nn.Module, recipe: Recipe, generator: torch.Generator) -> tuple[int, int]:
    """Restore the newest valid checkpoint of the run, if any; returns (completed epochs, steps taken)."""
    state: Optional[TrainingState] = store.latest()
    if state is None:
        return 0, 0
    model.load_state_dict(state.model)
    recipe.load_state_dict(state.recipe)
    restore_rng(state.rng, generator)
    return state.epoch, state.step


def _evaluate_all(model: nn.Module, averaged: Optional[nn.Module], splits: DatasetSplits, batch_size: int,
                  device: torch.device) -> dict[str, float]:
    test_loss, test_acc = evaluate(model, splits.test_inputs, splits.test_targets, batch_size, device)
    metrics = {"test_loss": test_loss, "test_acc": test_acc}
    if averaged is not None:
        metrics["test_loss_avg"], metrics["test_acc_avg"] = evaluate(
            averaged, splits.test_inputs, splits.test_targets, batch_size, device
        )
        metrics["train_loss_avg"], metrics["train_acc_avg"] = evaluate(
            averaged, splits.train_inputs, splits.train_targets, batch_size, device
        )
    return metrics


def _checkpoint_due(completed_epochs: int, cfg: TrialConfig) -> bool:
    return (completed_epochs % cfg.checkpoint.every == 0 or completed_epochs == cfg.trainer.epochs
            or completed_epochs in spectrum_epochs(cfg))


def _inject_faults(faults: dict[str, Any], epoch: int, model: nn.Module) -> None:
    """Test-only failures at the start of a 0-based epoch: an exception, or weights that make the loss nan; and a
    pause before every epoch, for tests that act on a trial while it runs."""
    time.sleep(float(faults.get("sleep_per_epoch_s", 0.0)))
    if faults.get("raise_at_epoch") == epoch:
        raise RuntimeError(f"injected failure at epoch {epoch + 1}")
    if faults.get("nan_at_epoch") == epoch:
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
