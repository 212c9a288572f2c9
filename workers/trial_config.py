"""A trial's config as typed, frozen values: the one definition both planes use.

The control plane composes ``orchestrator/conf/`` with Hydra onto these classes (``orchestrator/schema.py``
registers them as the schema of every YAML option, so a misspelt key or a value of the wrong type fails at
composition), builds one :class:`TrialConfig` per trial with ``OmegaConf.to_object`` and hands it to the workers,
which read attributes, never dict keys. Range rules that a type cannot express live with the registries
(``workers/training/*_kinds.py``, ``optimizers.py``, ``schedules.py``) and in ``workers/config_rules.py``.

Hydra-free and torch-free; ``MISSING`` marks a value the YAML option or the command line must give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


# --- model -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    name: str = MISSING


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [100])
    # relu, tanh or gelu.
    activation: str = "relu"


@dataclass(frozen=True)
class VGGConfig(ModelConfig):
    name: str = "vgg"
    # The convolutional stack of VGG-11, -13, -16 or -19 (configurations A, B, D, E), BatchNorm after each conv.
    depth: int = 16
    # Multiplies every convolution's channel count (0.125 with depth 11 trains on a CPU).
    width_factor: float = 1.0
    # Hidden widths of the classifier (each Dropout-Linear-ReLU); [] leaves a single linear layer.
    classifier_hidden: list[int] = field(default_factory=lambda: [512, 512])
    dropout: float = 0.5


@dataclass(frozen=True)
class PreResNetConfig(ModelConfig):
    name: str = "preresnet"
    # 9n+2 with bottleneck blocks: 164 in the paper; 11 or 20 trains on a CPU.
    depth: int = 164


@dataclass(frozen=True)
class WideResNetConfig(ModelConfig):
    name: str = "wideresnet"
    # 6n+4: 28 in the paper; 10 or 16 trains on a CPU.
    depth: int = 28
    widen_factor: int = 10
    # Dropout between the two convolutions of each block.
    dropout: float = 0.0


# --- dataset -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetConfig:
    name: str = MISSING
    # Directory holding the dataset's files (mnist, cifar10, cifar100); those that ship inside a package ignore it.
    root: Optional[str] = None
    # Fraction of the examples held out as the test split, for datasets without an official split (mnist5k, digits).
    test_fraction: float = 0.2
    # Seed of the fixed train/test split and of ``subsample``: part of a trial's identity.
    split_seed: int = 0
    # Keep only this many training examples (a fixed, seeded subset) for quick runs; null keeps all.
    subsample: Optional[int] = None
    # Random crops (4-pixel zero padding) and horizontal flips of each training batch; cifar10 / cifar100 only.
    augment: bool = False


# --- optimizer ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AveragingConfig:
    # Iterate averaging (IA) of the weights: gadam, gadamx and swa turn it on.
    enabled: bool = False
    # T_avg: iterates join the average once this many epochs are complete; null: trainer.epochs // 2.
    start_epoch: Optional[int] = None
    # Fold the weights into the average after every "epoch" or after every optimizer "step".
    every: str = "epoch"


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    # Coupled L2 or decoupled decay already scaled by lr: workers.training.optimizers.OPTIMIZERS says which.
    weight_decay: float = 0.0
    averaging: AveragingConfig = field(default_factory=AveragingConfig)


@dataclass(frozen=True)
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False


@dataclass(frozen=True)
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass(frozen=True)
class AdamXConfig(AdamConfig):
    name: str = "gadamx"
    # Partial adaptivity p in (0, 0.5]: update = m_hat / (v_hat^p + eps); p = 0.5 is Gadam.
    p: float = 0.125


# --- schedule ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleConfig:
    name: str = MISSING


@dataclass(frozen=True)
class SWALinearConfig(ScheduleConfig):
    name: str = "swa_linear"
    # r of eq. 21: the final rate is lr * final_ratio.
    final_ratio: float = 0.01


@dataclass(frozen=True)
class IALinearConfig(ScheduleConfig):
    name: str = "ia_linear"
    # a_avg / a0 of eq. 22: the rate once iterate averaging is near.
    avg_ratio: float = 0.5


@dataclass(frozen=True)
class PaperScheduleConfig(ScheduleConfig):
    # Eq. 22 when the optimizer averages iterates, eq. 21 otherwise: one schedule for a sweep over optimizers.
    name: str = "paper"
    final_ratio: float = 0.01
    avg_ratio: float = 0.5


# --- spectrum ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpectrumConfig:
    enabled: bool = False
    # Extra epochs (besides the end of training) at which to compute a spectrum.
    at_epochs: list[int] = field(default_factory=list)
    operator: str = "hessian"
    steps: int = 80
    num_vectors: int = 5
    seed: int = 0
    distribution: str = "rademacher"
    bn_mode: str = "eval"
    dtype: str = "float32"
    # Use a fixed seeded subsample of the training set; null uses all of it.
    max_samples: Optional[int] = None
    # Examples per Hessian-vector product: null = the trial's trainer.batch_size in BatchNorm train mode (where the
    # batch size is part of the operator), 1024 in eval mode (where it only bounds memory).
    batch_size: Optional[int] = None
    # Where to run: a gang of workers, each with a shard of the data (1 = in the trial's own process).
    num_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    # Where the Lanczos basis (steps x parameters) lives: null = with the products (on the GPU when there is
    # one), "cpu" = host memory, for models whose basis would not fit beside the network on the accelerator.
    basis_device: Optional[str] = None
    # Whose Hessian: "iterate" (the trained weights), "average" (the iterate average, with BatchNorm statistics
    # recomputed for it), "both"; null = both when the optimizer averages iterates, else iterate. Averaged results
    # are logged as their own metric set (lambda_max_avg, ...).
    weights: Optional[str] = None
    # A killed job continues from progress saved in the run every this many Lanczos steps (0: never), the
    # current vector's basis included while it is at most progress_basis_mb (else from the last whole vector).
    progress_every: int = 10
    progress_basis_mb: float = 256.0


# --- where to run ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterConfig:
    # Ray address of an existing cluster ("ray://host:10001", "host:6379", "auto"); null starts a local Ray
    # (or joins RAY_ADDRESS when it is set).
    address: Optional[str] = None
    # Resources of one trial; torch uses ``num_cpus`` threads inside it.
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # CPUs of the local Ray started when no address is given; null uses every core.
    local_num_cpus: Optional[int] = None
    # Times Ray re-runs a trial whose worker process died (OOM, node loss, kill -9).
    max_retries: int = 2
    # Exception class names (e.g. "ConnectionError") that are retried too; other errors fail the trial.
    retry_exceptions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TrackingConfig:
    # MLflow tracking URI; null uses MLFLOW_TRACKING_URI, else a local store in ``local_dir``.
    uri: Optional[str] = None
    experiment: str = "curvature-sweeps"
    # Directory of the local store (sqlite database and artifacts), relative to the working directory.
    local_dir: str = ".sweeps"
    # Seconds between a running trial's heartbeats (training and spectrum jobs). Each run records its interval;
    # one whose owner cannot be asked is shown stale after a few missed beats.
    heartbeat_interval: float = 30.0
    # How long the coordinator and the trials retry tracking calls through a server outage before giving up.
    outage_timeout: float = 300.0


@dataclass(frozen=True)
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 128
    eval_batch_size: int = 1024
    seed: int = 0
    # "auto" picks cuda when available.
    device: str = "auto"


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1
    keep: int = 2


@dataclass(frozen=True)
class SweepMetaConfig:
    # Names the sweep; without a name the sweep id is a hash of the base config and the swept keys.
    name: Optional[str] = None
    # What a search (hydra/sweeper=optuna, ...) optimises: a metric of the trial's last epoch, maximised or minimised.
    objective: str = "test_acc"
    objective_mode: str = "max"
    # A search's pruner (null: none; median: optuna's MedianPruner): a trial whose best objective so far is worse
    # than the median of the earlier completed trials at the same epoch stops, its run KILLED with a `pruned` tag.
    pruner: Optional[str] = None
    # The pruner stops no trial until this many trials of the search have completed (pruned ones not counted).
    pruner_startup_trials: int = 5
    # The pruner judges no trial on its first this-many epochs; a trial it prunes stops at its next epoch.
    pruner_warmup_epochs: int = 0


@dataclass(frozen=True)
class TrialConfig:
    """One trial's whole resolved config: ``orchestrator/conf/config.yaml`` composed, without Hydra's own node."""

    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    sweep: SweepMetaConfig = field(default_factory=SweepMetaConfig)


def as_plain(config: Any) -> dict[str, Any]:
    """A config (or one of its groups) as nested plain dicts and lists: for hashing, MLflow params and JSON."""
    return asdict(config)
