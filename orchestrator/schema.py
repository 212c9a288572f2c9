"""Structured configs: the typed schema behind every YAML file in ``orchestrator/conf/``.

Each config group option extends one of these dataclasses (see ``orchestrator/conf/<group>/*.yaml``), so a misspelt
key or a value of the wrong type fails at composition time with Hydra's own message, before anything is launched.
Range checks that a type cannot express (``lr > 0``) live in :mod:`orchestrator.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


# --- model -------------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    name: str = MISSING


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [100])
    # relu, tanh or gelu.
    activation: str = "relu"


@dataclass
class VGGConfig(ModelConfig):
    name: str = "vgg"
    # The convolutional stack of VGG-11, -13, -16 or -19 (configurations A, B, D, E), BatchNorm after each conv.
    depth: int = 16
    # Multiplies every convolution's channel count (0.125 with depth 11 trains on a CPU).
    width_factor: float = 1.0
    # Hidden widths of the classifier (each Dropout-Linear-ReLU); [] leaves a single linear layer.
    classifier_hidden: list[int] = field(default_factory=lambda: [512, 512])
    dropout: float = 0.5


@dataclass
class PreResNetConfig(ModelConfig):
    name: str = "preresnet"
    # 9n+2 with bottleneck blocks: 164 in the paper; 11 or 20 trains on a CPU.
    depth: int = 164


@dataclass
class WideResNetConfig(ModelConfig):
    name: str = "wideresnet"
    # 6n+4: 28 in the paper; 10 or 16 trains on a CPU.
    depth: int = 28
    widen_factor: int = 10
    # Dropout between the two convolutions of each block.
    dropout: float = 0.0


# --- dataset -----------------------------------------------------------------------------------------------
@dataclass
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
@dataclass
class AveragingConfig:
    # Iterate averaging (IA) of the weights: gadam, gadamx and swa turn it on.
    enabled: bool = False
    # T_avg: iterates join the average once this many epochs are complete; null: trainer.epochs // 2.
    start_epoch: Optional[int] = None
    # Fold the weights into the average after every "epoch" or after every optimizer "step".
    every: str = "epoch"


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    # Coupled L2 or decoupled decay already scaled by lr: workers.training.optimizers.OPTIMIZERS says which.
    weight_decay: float = 0.0
    averaging: AveragingConfig = field(default_factory=AveragingConfig)


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class AdamXConfig(AdamConfig):
    name: str = "gadamx"
    # Partial adaptivity p in (0, 0.5]: update = m_hat / (v_hat^p + eps); p = 0.5 is Gadam.
    p: float = 0.125


# --- schedule ----------------------------------------------------------------------------------------------
@dataclass
class ScheduleConfig:
    name: str = MISSING


@dataclass
class SWALinearConfig(ScheduleConfig):
    name: str = "swa_linear"
    # r of eq. 21: the final rate is lr * final_ratio.
    final_ratio: float = 0.01


@dataclass
class IALinearConfig(ScheduleConfig):
    name: str = "ia_linear"
    # a_avg / a0 of eq. 22: the rate once iterate averaging is near.
    avg_ratio: float = 0.5


@dataclass
class PaperScheduleConfig(ScheduleConfig):
    # Eq. 22 when the optimizer averages iterates, eq. 21 otherwise: one schedule for a sweep over optimizers.
    name: str = "paper"
    final_ratio: float = 0.01
    avg_ratio: float = 0.5


# --- spectrum ----------------------------------------------------------------------------------------------
@dataclass
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
@dataclass
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


@dataclass
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


@dataclass
class TrainerConfig:
    epochs: int = 5
    batch_size: int = 128
    eval_batch_size: int = 1024
    seed: int = 0
    # "auto" picks cuda when available.
    device: str = "auto"


@dataclass
class CheckpointConfig:
    every: int = 1
    keep: int = 2


@dataclass
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


@dataclass
class Config:
    model: Any = MISSING
    dataset: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    spectrum: SpectrumConfig = field(default_factory=SpectrumConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    sweep: SweepMetaConfig = field(default_factory=SweepMetaConfig)


_GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"mlp": MLPConfig, "vgg": VGGConfig, "preresnet": PreResNetConfig, "wideresnet": WideResNetConfig},
    "dataset": {"dataset": DatasetConfig},
    "optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "gadamx": AdamXConfig},
    "schedule": {"schedule": ScheduleConfig, "swa_linear": SWALinearConfig, "ia_linear": IALinearConfig,
                 "paper": PaperScheduleConfig},
    "spectrum": {"spectrum": SpectrumConfig},
    "cluster": {"cluster": ClusterConfig},
    "tracking": {"tracking": TrackingConfig},
}


def register_configs() -> None:
    """Register the schemas as ``<group>/_<name>_schema`` so each YAML option can extend one."""
    store = ConfigStore.instance()
    store.store(name="_config_schema", node=Config)
    for group, schemas in _GROUP_SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=f"_{name}_schema", node=node)
