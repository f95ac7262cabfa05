import pickle
from collections import Counter

import numpy as np
import pytest
import torch

from modnas_ops.data import (
    CIFAR10_DIR,
    DataSplits,
    available_datasets,
    get_dataset,
    load_cifar10,
    load_digits_splits,
    stratified_split_indices,
)

SPLITS = ("train", "valid", "test")


def _tensors(splits: DataSplits, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(splits, split).tensors


def _raw_pixels(splits: DataSplits, split: str, levels: int) -> np.ndarray:
    """Undo the standardisation and recover the integer pixel levels (0..levels) of each image."""
    x, _ = _tensors(splits, split)
    mean = np.asarray(splits.mean, dtype=np.float64)[None, :, None, None]
    std = np.asarray(splits.std, dtype=np.float64)[None, :, None, None]
    return np.rint((x.numpy().astype(np.float64) * std + mean) * levels).astype(np.int64)


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_digits_splits(seed=0)


def test_stratified_split_indices_partition_and_determinism():
    labels = np.repeat(np.arange(4), 40)  # (160,)
    parts = stratified_split_indices(labels, (0.5, 0.25, 0.25), seed=3)
    assert [len(p) for p in parts] == [80, 40, 40]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(160))
    for p, n in zip(parts, (80, 40, 40), strict=True):
        assert Counter(labels[p].tolist()) == {c: n // 4 for c in range(4)}  # stratified
    again = stratified_split_indices(labels, (0.5, 0.25, 0.25), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = stratified_split_indices(labels, (0.5, 0.25, 0.25), seed=4)
    assert not np.array_equal(parts[0], other[0])


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (1.0,), (0.5, 0.0, 0.5), (0.7, -0.1, 0.4)])
def test_stratified_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions must be"):
        stratified_split_indices(np.zeros(10), fractions)


def test_digits_shapes_and_types(digits):
    assert digits.name == "digits" and digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    sizes = {s: len(getattr(digits, s)) for s in SPLITS}
    assert sum(sizes.values()) == 1797
    assert sizes["train"] == pytest.approx(1797 * 0.5, abs=1)
    assert sizes["valid"] == pytest.approx(1797 * 0.25, abs=1)
    for split in SPLITS:
        x, y = _tensors(digits, split)
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def test_digits_standardised_with_train_statistics(digits):
    x_train, _ = _tensors(digits, "train")
    assert abs(float(x_train.mean())) < 1e-5
    assert float(x_train.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    x_valid, _ = _tensors(digits, "valid")
    assert abs(float(x_valid.mean())) > 1e-5  # not re-standardised with its own statistics
    assert 0.0 < digits.mean[0] < 1.0  # statistics of pixels scaled to [0, 1]


def test_digits_splits_partition_the_dataset(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    original = Counter(
        (row.astype(np.int64).tobytes(), int(t)) for row, t in zip(bunch.data, bunch.target, strict=True)
    )
    recovered = Counter()
    for split in SPLITS:
        pixels = _raw_pixels(digits, split, levels=16).reshape(-1, 64)
        _, y = _tensors(digits, split)
        recovered.update((row.tobytes(), int(t)) for row, t in zip(pixels, y.tolist(), strict=True))
    assert recovered == original  # every image exactly once across the three splits


def test_digits_deterministic_per_seed(digits):
    again = load_digits_splits(seed=0)
    other = load_digits_splits(seed=1)
    for split in SPLITS:
        assert all(torch.equal(a, b) for a, b in zip(_tensors(digits, split), _tensors(again, split), strict=True))
    assert not torch.equal(_tensors(digits, "train")[1], _tensors(other, "train")[1])


def test_digits_custom_fractions_and_errors():
    splits = load_digits_splits(fractions=(0.6, 0.2, 0.2))
    assert len(splits.train) == pytest.approx(1797 * 0.6, abs=1)
    with pytest.raises(ValueError, match=r"fractions must be \(train, valid, test\)"):
        load_digits_splits(fractions=(0.5, 0.5))


def _fake_cifar(root, n_per_batch=20, seed=0, skip=()):
    """A tiny cifar-10-batches-py with the real file names and keys; returns all written images/labels."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_DIR
    folder.mkdir(parents=True)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(n_per_batch)]
        written[name] = (data, labels)
        if name not in skip:
            with (folder / name).open("wb") as f:
                pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f)
    return folder, written


def test_cifar10_from_fake_batches(tmp_path):
    folder, written = _fake_cifar(tmp_path)
    splits = load_cifar10(tmp_path, seed=0)
    assert splits.name == "cifar10" and splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50, 50, 20)
    for split in SPLITS:
        x, y = _tensors(splits, split)
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
    # stratified halves: 5 of each class in train and in valid
    assert Counter(_tensors(splits, "train")[1].tolist()) == dict.fromkeys(range(10), 5)
    # per-channel standardisation with train statistics
    x_train, _ = _tensors(splits, "train")
    assert x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    # the test split is the test batch, in order, channel-major (R plane, G plane, B plane)
    test_data, test_labels = written["test_batch"]
    np.testing.assert_array_equal(_raw_pixels(splits, "test", levels=255).reshape(-1, 3072), test_data)
    assert _tensors(splits, "test")[1].tolist() == test_labels
    # train + valid are exactly the five train batches
    train_rows = Counter(
        row.tobytes()
        for split in ("train", "valid")
        for row in _raw_pixels(splits, split, levels=255).astype(np.uint8).reshape(-1, 3072)
    )
    expected = Counter(row.tobytes() for i in range(1, 6) for row in written[f"data_batch_{i}"][0])
    assert train_rows == expected
    # the folder itself is accepted as root; same seed, same splits
    again = load_cifar10(folder, seed=0)
    assert torch.equal(_tensors(again, "valid")[0], _tensors(splits, "valid")[0])


def test_cifar10_valid_fraction(tmp_path):
    _fake_cifar(tmp_path)
    splits = load_cifar10(tmp_path, valid_fraction=0.2)
    assert (len(splits.train), len(splits.valid)) == (80, 20)
    with pytest.raises(ValueError, match="valid_fraction"):
        load_cifar10(tmp_path, valid_fraction=1.0)


def test_cifar10_missing_folder_says_nothing_is_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{CIFAR10_DIR}.*does not exist.*nothing is downloaded"):
        load_cifar10(tmp_path)


def test_cifar10_missing_file_named(tmp_path):
    _fake_cifar(tmp_path, skip=("data_batch_3",))
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 is missing.*nothing is downloaded"):
        load_cifar10(tmp_path)


def test_cifar10_malformed_batch(tmp_path):
    folder, _ = _fake_cifar(tmp_path)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    with pytest.raises(ValueError, match=r"test_batch: b'data' is uint8 \(4, 100\)"):
        load_cifar10(tmp_path)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"images": 1}, f)
    with pytest.raises(ValueError, match="lacks the keys"):
        load_cifar10(tmp_path)


def test_registry(tmp_path, digits):
    assert available_datasets() == ["cifar10", "digits", "image-folder", "npz", "patterns", "pydoc-bytes"]
    via_registry = get_dataset("digits", seed=0)
    assert torch.equal(_tensors(via_registry, "test")[0], _tensors(digits, "test")[0])
    _fake_cifar(tmp_path)
    assert get_dataset("cifar10", root=tmp_path).name == "cifar10"
    with pytest.raises(ValueError, match="needs root="):
        get_dataset("cifar10")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; available: cifar10, digits"):
        get_dataset("mnist")


def test_patterns_are_deterministic_balanced_and_carry_no_histogram_cue():
    from modnas_ops.data import PATTERN_CLASSES, get_dataset, make_patterns

    x, y = make_patterns(500, seed=3)
    x2, y2 = make_patterns(500, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert x.shape == (500, 1, 16, 16) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [50] * len(PATTERN_CLASSES)
    signs = np.sign(x).reshape(len(x), -1).mean(1)  # share of positive minus negative pixels per image
    per_class = np.array([signs[y == c].mean() for c in range(len(PATTERN_CLASSES))])
    assert np.abs(per_class).max() < 0.1  # every class is half +1, half -1: the class is in the layout
    splits = get_dataset("patterns", seed=0)
    assert splits.input_shape == (1, 16, 16) and splits.num_classes == 10
    assert [len(getattr(splits, k)) for k in ("train", "valid", "test")] == [4000, 2000, 2000]
    assert not torch.equal(splits.train.tensors[0][:10], splits.valid.tensors[0][:10])
