"""Dataset readers on small files written by the tests in the real formats, and the packaged datasets."""

from __future__ import annotations

import gzip
import itertools
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from config_groups import group_options, resolves
from dataset_files import legacy_pickle, write_cifar
from workers.training.augment import RandomCropFlip
from workers.training.config_checks import training_examples
from workers.training.dataset_kinds import DATASETS
from workers.training.data import load_dataset
from workers.trial_config import DatasetConfig

def _cfg(name: str, **overrides) -> DatasetConfig:
    return DatasetConfig(name=name, **overrides)


# --- MNIST IDX ------------------------------------------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()


def _write_mnist(root: Path, n_train: int = 6, n_test: int = 4, compress: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if compress:
            (root / f"{name}.gz").write_bytes(gzip.compress(_idx(array)))
        else:
            (root / name).write_bytes(_idx(array))
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reads_the_idx_files(tmp_path: Path, compress: bool) -> None:
    arrays = _write_mnist(tmp_path, compress=compress)
    splits = load_dataset(_cfg("mnist", root=str(tmp_path)))
    assert splits.input_shape == (1, 28, 28) == DATASETS["mnist"].input_shape and splits.num_classes == 10
    assert splits.train_inputs.shape == (6, 1, 28, 28) and splits.test_inputs.shape == (4, 1, 28, 28)
    expected = (arrays["train-images-idx3-ubyte"][:, None] / 255.0 - 0.1307) / 0.3081
    torch.testing.assert_close(splits.train_inputs, torch.from_numpy(expected).float())
    assert splits.train_targets.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert splits.test_targets.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert splits.augment is None


def test_mnist_subsample_is_fixed_and_seeded(tmp_path: Path) -> None:
    _write_mnist(tmp_path, n_train=20)
    first = load_dataset(_cfg("mnist", root=str(tmp_path), subsample=5))
    again = load_dataset(_cfg("mnist", root=str(tmp_path), subsample=5))
    other = load_dataset(_cfg("mnist", root=str(tmp_path), subsample=5, split_seed=1))
    assert len(first.train_targets) == 5 and len(first.test_targets) == 4
    assert torch.equal(first.train_inputs, again.train_inputs)
    assert not torch.equal(first.train_inputs, other.train_inputs)


def test_missing_mnist_root_is_one_line_naming_files_directory_and_source(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError) as error:
        load_dataset(_cfg("mnist", root=str(missing)))
    message = str(error.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert f"{missing} (no such directory)" in message and "yann.lecun.com/exdb/mnist" in message


def test_unset_root_is_refused_with_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"dataset.root=null: dataset=cifar100 needs dataset.root=DIR.*cifar-100-python"):
        load_dataset(_cfg("cifar100"))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "not an IDX file of unsigned bytes with 3 dimension"),
        (lambda raw: raw[:-10], "holds 4694 bytes of data, its header announces"),
    ],
)
def test_malformed_mnist_file_is_named(tmp_path: Path, corrupt, message: str) -> None:
    _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as error:
        load_dataset(_cfg("mnist", root=str(tmp_path)))
    assert str(path) in str(error.value)


# --- CIFAR python batches -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "mean", "std"),
    [("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
     ("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))],
)
def test_cifar_reads_the_python_batches(tmp_path: Path, name: str, mean, std) -> None:
    written = write_cifar(tmp_path, name)
    splits = load_dataset(_cfg(name, root=str(tmp_path)))
    train_files = [f for f in written if f not in ("test_batch", "test")]
    test_file = "test_batch" if name == "cifar10" else "test"
    assert splits.input_shape == (3, 32, 32) == DATASETS[name].input_shape
    assert splits.num_classes == (10 if name == "cifar10" else 100)
    assert splits.train_inputs.shape == (3 * len(train_files), 3, 32, 32) and splits.test_inputs.shape == (3, 3, 32, 32)
    # Row layout: 1024 red, 1024 green, 1024 blue values, each a 32x32 image in row-major order.
    first = written[train_files[0]][0][0]
    for channel in range(3):
        pixels = first[channel * 1024 : (channel + 1) * 1024].reshape(32, 32) / 255.0
        expected = torch.from_numpy((pixels - mean[channel]) / std[channel]).float()
        torch.testing.assert_close(splits.train_inputs[0, channel], expected)
    assert splits.train_targets.tolist() == sum((written[f][1] for f in train_files), [])
    assert splits.test_targets.tolist() == written[test_file][1]


def test_cifar_root_may_be_the_extracted_folder_itself(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100")
    splits = load_dataset(_cfg("cifar100", root=str(tmp_path / "cifar-100-python")))
    assert len(splits.train_targets) == 3


def test_missing_cifar_files_are_one_line_naming_files_directory_and_source(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(ValueError) as error:
        load_dataset(_cfg("cifar10", root=str(tmp_path)))
    message = str(error.value)
    assert "\n" not in message
    assert "cifar-10-batches-py/data_batch_4 is missing" in message and f"in {tmp_path}," in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100")

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-100-python" / "train").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(ValueError, match=r"print is not part of a CIFAR batch"):
        load_dataset(_cfg("cifar100", root=str(tmp_path)))


def test_malformed_cifar_batch_is_named(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar100")
    path = tmp_path / "cifar-100-python" / "test"
    path.write_bytes(legacy_pickle({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data of shape \(2, 100\) with 2 labels, expected \(N, 3072\)"):
        load_dataset(_cfg("cifar100", root=str(tmp_path)))


# --- augmentation ---------------------------------------------------------------------------------------------
def test_augmentation_is_on_for_cifar_when_asked(tmp_path: Path) -> None:
    write_cifar(tmp_path, "cifar10")
    assert load_dataset(_cfg("cifar10", root=str(tmp_path), augment=False)).augment is None
    augment = load_dataset(_cfg("cifar10", root=str(tmp_path), augment=True)).augment
    assert isinstance(augment, RandomCropFlip) and augment.padding == 4
    # The padding is black in the raw image: 0 before normalisation.
    assert augment.fill == pytest.approx(tuple(-m / s for m, s in zip((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))))
    with pytest.raises(ValueError, match="dataset.augment=true: crops and flips are for cifar10 and cifar100 only"):
        load_dataset(_cfg("digits", augment=True))


def _candidates(image: torch.Tensor, padding: int, fill: tuple[float, ...]):
    c, h, w = image.shape
    padded = torch.tensor(fill).view(c, 1, 1).expand(c, h + 2 * padding, w + 2 * padding).clone()
    padded[:, padding : padding + h, padding : padding + w] = image
    for dy, dx, flip in itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)):
        crop = padded[:, dy : dy + h, dx : dx + w]
        yield (dy, dx, flip), crop.flip(2) if flip else crop


def test_each_augmented_image_is_a_padded_crop_maybe_flipped() -> None:
    augment = RandomCropFlip(2, (-1.0, -2.0, -3.0))
    batch = torch.randn(24, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    out = augment(batch, torch.Generator().manual_seed(1))
    chosen = []
    for image, result in zip(batch, out):
        matches = [key for key, crop in _candidates(image, 2, augment.fill) if torch.equal(crop, result)]
        assert matches, "not a crop of the padded image"
        chosen.append(matches[0])
    assert len({key[:2] for key in chosen}) > 5 and {key[2] for key in chosen} == {False, True}


def test_augmentation_is_a_function_of_the_generator_state() -> None:
    augment = RandomCropFlip(4, (0.0, 0.0, 0.0))
    batch = torch.randn(16, 3, 32, 32)
    first = augment(batch, torch.Generator().manual_seed(7))
    assert torch.equal(first, augment(batch, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment(batch, torch.Generator().manual_seed(8)))


# --- packaged datasets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "size", "shape"), [("mnist5k", 5000, (784,)), ("digits", 1797, (64,))])
def test_packaged_datasets_split_and_standardise(name: str, size: int, shape: tuple) -> None:
    splits = load_dataset(_cfg(name))
    n_test = round(size * 0.2)
    assert splits.input_shape == shape and splits.num_classes == 10
    assert len(splits.test_targets) == n_test and len(splits.train_targets) == size - n_test
    assert splits.train_inputs.shape == (size - n_test, *shape)
    assert abs(float(splits.train_inputs.mean())) < 1e-4 and abs(float(splits.train_inputs.std()) - 1) < 1e-3
    assert set(splits.train_targets.tolist()) == set(range(10))
    other = load_dataset(_cfg(name, split_seed=1))
    assert not torch.equal(splits.test_targets, other.test_targets)
    small = load_dataset(_cfg(name, subsample=100))
    assert len(small.train_targets) == 100 and torch.equal(small.test_inputs, splits.test_inputs)
    distances = torch.cdist(small.train_inputs, splits.train_inputs, compute_mode="donot_use_mm_for_euclid_dist")
    assert bool((distances.min(1).values == 0).all())  # a subset of the training split


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
@pytest.mark.parametrize(("test_fraction", "subsample"), [(0.2, None), (0.33, None), (0.2, 100), (0.5, 100_000)])
def test_what_is_known_before_loading_is_what_loads(name: str, test_fraction: float, subsample) -> None:
    """The pre-launch checks (an image model needs images, a spectrum's shards need batches) read these facts."""
    cfg = _cfg(name, test_fraction=test_fraction, subsample=subsample)
    splits = load_dataset(cfg)
    assert splits.input_shape == DATASETS[name].input_shape
    assert len(splits.train_targets) == training_examples(cfg)


def test_every_dataset_option_has_one_registry_entry_and_its_loader_resolves() -> None:
    assert group_options("dataset") == set(DATASETS)
    assert all(resolves(kind.loader) for kind in DATASETS.values())
