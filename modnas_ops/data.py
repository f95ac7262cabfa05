"""Datasets as deterministic train / valid / test splits of in-memory tensors.

- ``patterns`` (embedded default): procedurally generated 16x16 binary textures in 10 classes — stripes in 4
  orientations x 2 period bands, checkerboards, rings — with flipped pixels and Gaussian noise. Every class
  has the same pixel histogram (balanced +-1 before noise), so the class is in the *spatial* structure:
  a network whose cells compute no spatial convolution cannot tell the classes apart, and the architecture
  decides the accuracy (see ``make_patterns``).
- ``digits``: scikit-learn's embedded 8x8 grayscale digits (1,797 images, no download), stratified
  train/valid/test splits.
- ``pydoc-bytes``: a byte-level language-model task on the English documentation CPython ships in every
  install (``pydoc_data.topics``, ~466k bytes, PSF licence; nothing downloaded): 64-byte windows, the target
  is the next byte at every position (see ``load_pydoc_bytes``).
- your own images (``root`` names them): ``image-folder`` (one subfolder per class, every image the same size;
  grayscale kept as 1 channel, anything else as RGB), ``npz`` (arrays ``x`` (N, C, H, W) or (N, H, W) and
  integer labels ``y`` (N,)), or ``module:function`` (a callable of ``seed`` returning ``(x, y)`` arrays or
  tensors, or a ready :class:`DataSplits`): stratified train / valid / test halves / quarters, deterministic
  in the seed. Bad data (an unreadable image, one class, mismatched shapes) is a ``UserError`` naming the file.
- ``cifar10``: a local ``cifar-10-batches-py`` folder (the standard python-pickle release; nothing is
  downloaded). The 50,000 training images are split (stratified) into train and valid halves for the
  bi-level search (weights on train, architecture on valid); the test batch is the test split.

Pixels are scaled to [0, 1] and standardised per channel with statistics of the TRAIN split only.
Each split set carries its :class:`Task`: the loss every trainer minimises (cross-entropy over the last axis,
of a label per image or of a byte per position) and the error a search reports (percent misclassified, or
the mean cross-entropy in nats per byte for a language model, whose exp is the perplexity).
The CIFAR-10 batches are pickles, as released: only point ``root`` at files you trust.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from .errors import UserError
from .registry import Registry

logger = logging.getLogger(__name__)

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_SHAPE = (3, 32, 32)
CIFAR10_CLASSES = 10


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every target: logits (..., K) against int64 targets (...), e.g. (B, K) / (B,)
    for a label per image or (B, T, V) / (B, T) for a token per position."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


@dataclass(frozen=True)
class Task:
    """What a network's outputs are scored by: ``loss`` (differentiable, mean over the batch) and ``error``
    (the search's error objective: per-sample errors summed by :meth:`error_sum`, then averaged);
    ``sample_dims``: the rank of one input sample ((C, H, W) = 3, (T,) = 1)."""

    name: str
    error_unit: str
    sample_dims: int

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target)

    def error_sum(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        """Sum over the batch of each sample's error."""
        raise NotImplementedError


@dataclass(frozen=True)
class Classification(Task):
    """Logits (B, K), labels (B,); error = percent misclassified."""

    def error_sum(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        return 100.0 * float((logits.argmax(-1) != target).sum())


@dataclass(frozen=True)
class LanguageModel(Task):
    """Logits (B, T, V), next tokens (B, T); error = mean cross-entropy per token in nats (its exp is the
    perplexity)."""

    def error_sum(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, -1), target, reduction="none")  # (B, T)
        return float(ce.mean(dim=1).sum())


CLASSIFICATION = Classification("classification", "%", sample_dims=3)
LANGUAGE_MODEL = LanguageModel("language_model", "nats per token", sample_dims=1)


@dataclass(frozen=True)
class DataSplits:
    """Train / valid / test ``TensorDataset``s: (N, C, H, W) float32 images and (N,) int64 labels, or (N, T)
    int64 token ids and (N, T) next-token targets (``task`` says which).

    ``mean`` / ``std`` (per channel) are the train-split statistics the images were standardised with.
    ``num_classes`` is the number of labels, or the vocabulary of a language model.
    """

    train: TensorDataset
    valid: TensorDataset
    test: TensorDataset
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    task: Task = CLASSIFICATION
    source: str = ""  # the file or folder read, or "" where code generates the data (``name`` says which)

    def digest(self) -> str:
        """SHA-256 of the splits (every tensor's dtype, shape and bytes, and the fields): the data's identity
        for the run's inputs, as the search fingerprints it (:func:`modnas_ops.search.content_hash`)."""
        from .search import content_hash

        return content_hash(self)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def __post_init__(self) -> None:
        if len(self.input_shape) != self.task.sample_dims:
            raise ValueError(
                f"{self.name}: input_shape {self.input_shape} has not the {self.task.sample_dims} dimensions of a "
                f"{self.task.name} sample"
            )
        for split in ("train", "valid", "test"):
            images = getattr(self, split).tensors[0]
            if tuple(images.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"{self.name}: {split} images of shape {tuple(images.shape[1:])}, expected {self.input_shape}"
                )


def stratified_split_indices(labels: np.ndarray, fractions: Sequence[float], seed: int = 0) -> tuple[np.ndarray, ...]:
    """Disjoint index arrays (sorted) covering ``range(len(labels))``, one per fraction, each stratified by
    label; deterministic for a given ``seed``. ``fractions`` must be positive and sum to 1."""
    fr = [float(f) for f in fractions]
    if len(fr) < 2 or any(not f > 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be >= 2 positive numbers summing to 1, got {tuple(fractions)}")
    labels = np.asarray(labels)
    rest = np.arange(len(labels))
    out = []
    remaining = 1.0
    for f in fr[:-1]:
        take, rest = train_test_split(
            rest, train_size=f / remaining, stratify=labels[rest], random_state=seed, shuffle=True
        )
        out.append(np.sort(take))
        remaining -= f
    out.append(np.sort(rest))
    return tuple(out)


def _standardise(
    images: dict[str, np.ndarray], labels: dict[str, np.ndarray]
) -> tuple[dict[str, TensorDataset], tuple[float, ...], tuple[float, ...]]:
    """Standardise (N, C, H, W) float32 images per channel, in place, with train-split statistics."""
    train = images["train"]
    mean = train.mean(axis=(0, 2, 3), dtype=np.float64)  # (C,)
    std = train.std(axis=(0, 2, 3), dtype=np.float64)  # (C,)
    if np.any(std == 0):
        raise ValueError("a channel of the train split is constant: cannot standardise it")
    shift = mean.astype(np.float32)[None, :, None, None]  # (1, C, 1, 1)
    scale = std.astype(np.float32)[None, :, None, None]  # (1, C, 1, 1)
    datasets = {}
    for split, x in images.items():
        x -= shift  # in place: the caller hands over fresh float32 arrays
        x /= scale
        datasets[split] = TensorDataset(
            torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels[split].astype(np.int64))
        )
    return datasets, tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_digits_splits(seed: int = 0, fractions: Sequence[float] = (0.5, 0.25, 0.25)) -> DataSplits:
    """scikit-learn's 8x8 digits as stratified train/valid/test splits of (N, 1, 8, 8) float32."""
    from sklearn.datasets import load_digits

    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, valid, test), got {tuple(fractions)}")
    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)  # (N, 1, 8, 8) in [0, 1]
    y = bunch.target.astype(np.int64)  # (N,)
    idx = dict(zip(("train", "valid", "test"), stratified_split_indices(y, fractions, seed), strict=True))
    datasets, mean, std = _standardise({k: x[i] for k, i in idx.items()}, {k: y[i] for k, i in idx.items()})
    logger.info("digits: %s", {k: len(i) for k, i in idx.items()})
    return DataSplits(**datasets, input_shape=(1, 8, 8), num_classes=10, name="digits", mean=mean, std=std)


PATTERN_CLASSES = (
    *(f"stripes-{o}-{b}" for b in ("fine", "coarse") for o in ("horizontal", "vertical", "diagonal", "antidiagonal")),
    "checkerboard",
    "rings",
)


def make_patterns(
    n: int, seed: int = 0, size: int = 16, flip: float = 0.15, noise: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, size, size) float32 images and (n,) int64 labels (balanced, shuffled), deterministic in ``seed``.

    Class c < 8: stripes sign(sin(2 pi t / period + phase)) along t = y, x, (x + y)/sqrt 2 or (x - y)/sqrt 2
    (orientation c % 4), period U(3, 4.5) px ("fine", c < 4) or U(4.5, 7) px ("coarse"); 8: a checkerboard
    sign(sin(2 pi x / p + a) sin(2 pi y / p + b)), p ~ U(4, 7); 9: rings sign(sin(2 pi r / p + a)) around a
    uniform random centre. Random phases; then each pixel flips with probability ``flip`` and N(0, noise^2)
    is added."""
    if n < 1 or size < 4 or not 0 <= flip < 0.5 or noise < 0:
        raise ValueError(
            f"make_patterns: need n >= 1, size >= 4, 0 <= flip < 0.5, noise >= 0; got {n, size, flip, noise}"
        )
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % len(PATTERN_CLASSES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)  # (size, size)
    coords = (yy, xx, (xx + yy) / np.sqrt(2.0), (xx - yy) / np.sqrt(2.0))
    images = np.empty((n, 1, size, size), dtype=np.float32)
    for i, c in enumerate(labels):
        phase = rng.uniform(0.0, 2 * np.pi)
        if c < 8:
            period = rng.uniform(3.0, 4.5) if c < 4 else rng.uniform(4.5, 7.0)
            wave = np.sin(2 * np.pi * coords[c % 4] / period + phase)
        elif c == 8:
            p = rng.uniform(4.0, 7.0)
            wave = np.sin(2 * np.pi * xx / p + phase) * np.sin(2 * np.pi * yy / p + rng.uniform(0.0, 2 * np.pi))
        else:
            cy, cx = rng.uniform(0.0, size, 2)
            wave = np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / rng.uniform(4.0, 7.0) + phase)
        img = np.where(wave >= 0, 1.0, -1.0)
        img = np.where(rng.random(img.shape) < flip, -img, img) + rng.normal(0.0, noise, img.shape)
        images[i, 0] = img
    return images, labels


def load_pattern_splits(seed: int = 0, sizes: Sequence[int] = (4000, 2000, 2000)) -> DataSplits:
    """The ``patterns`` task: independent draws for train / valid / test (seeds derived from ``seed``)."""
    if len(sizes) != 3 or any(int(k) < 10 for k in sizes):
        raise ValueError(f"sizes must be (train, valid, test), each >= 10, got {tuple(sizes)}")
    parts = {
        k: make_patterns(int(m), seed=1000 * seed + j)
        for j, (k, m) in enumerate(zip(("train", "valid", "test"), sizes, strict=True))
    }
    datasets, mean, std = _standardise({k: x for k, (x, _) in parts.items()}, {k: y for k, (_, y) in parts.items()})
    return DataSplits(
        **datasets, input_shape=(1, 16, 16), num_classes=len(PATTERN_CLASSES), name="patterns", mean=mean, std=std
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 32, 32) uint8 images and (n,) int64 labels of one CIFAR-10 python batch file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 file {path} is missing; place the python version 'cifar-10-batches-py' there "
            "(nothing is downloaded)"
        )
    with path.open("rb") as f:
        try:
            batch = pickle.load(f, encoding="bytes")
        except Exception as err:
            raise ValueError(f"CIFAR-10 file {path} is not a readable pickle: {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"CIFAR-10 file {path} lacks the keys b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    n_pixels = int(np.prod(CIFAR10_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != n_pixels:
        raise ValueError(f"CIFAR-10 file {path}: b'data' is {data.dtype} {data.shape}, expected uint8 (n, {n_pixels})")
    if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= CIFAR10_CLASSES:
        raise ValueError(f"CIFAR-10 file {path}: b'labels' must be {len(data)} labels in 0..{CIFAR10_CLASSES - 1}")
    return data.reshape(-1, *CIFAR10_SHAPE), labels


def load_cifar10(root: str | Path, seed: int = 0, valid_fraction: float = 0.5) -> DataSplits:
    """CIFAR-10 from ``root`` (the ``cifar-10-batches-py`` folder or its parent): the 5 train batches split
    (stratified) into train / valid, the test batch as test. Nothing is downloaded."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    root = Path(root).expanduser()
    folder = root if root.name == CIFAR10_DIR else root / CIFAR10_DIR
    if not folder.is_dir():
        raise FileNotFoundError(
            f"CIFAR-10 folder {folder} does not exist; download and extract the python version "
            f"'{CIFAR10_DIR}' yourself (nothing is downloaded)"
        )
    parts = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    x_all = np.concatenate([x for x, _ in parts])  # (50000, 3, 32, 32) uint8
    y_all = np.concatenate([y for _, y in parts])  # (50000,)
    x_test, y_test = _read_cifar_batch(folder / CIFAR10_TEST_FILE)
    train_idx, valid_idx = stratified_split_indices(y_all, (1.0 - valid_fraction, valid_fraction), seed)
    images = {
        "train": x_all[train_idx].astype(np.float32) / 255.0,
        "valid": x_all[valid_idx].astype(np.float32) / 255.0,
        "test": x_test.astype(np.float32) / 255.0,
    }
    labels = {"train": y_all[train_idx], "valid": y_all[valid_idx], "test": y_test}
    datasets, mean, std = _standardise(images, labels)
    logger.info("cifar10 from %s: %s", folder, {k: len(v) for k, v in labels.items()})
    return DataSplits(
        **datasets, input_shape=CIFAR10_SHAPE, num_classes=CIFAR10_CLASSES, name="cifar10", mean=mean, std=std
    )


PYDOC_BLOCK = 4096  # bytes per block; blocks are dealt to train / valid / test 8 : 1 : 1


def load_pydoc_bytes(seed: int = 0, context: int = 64) -> DataSplits:
    """The ``pydoc-bytes`` language-model task: CPython's ``pydoc_data.topics`` (topics in key order, UTF-8)
    cut into blocks of 4096 bytes, block i going to valid when i % 10 == 8, to test when i % 10 == 9 and to
    train otherwise (the same deal on every machine; ``seed`` only shuffles the train windows' order). Each
    block gives windows of ``context`` + 1 bytes at stride ``context``: input = the first ``context`` bytes,
    target = the next byte at every position. Vocabulary 256 (bytes)."""
    import pydoc_data.topics

    if context < 2:
        raise ValueError(f"pydoc-bytes: context must be >= 2, got {context}")
    topics = pydoc_data.topics.topics
    data = np.frombuffer("".join(topics[k] for k in sorted(topics)).encode("utf-8"), dtype=np.uint8)
    windows: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for i, start in enumerate(range(0, len(data), PYDOC_BLOCK)):
        block = data[start : start + PYDOC_BLOCK]
        split = "valid" if i % 10 == 8 else "test" if i % 10 == 9 else "train"
        for j in range(0, len(block) - context, context):
            windows[split].append(block[j : j + context + 1])
    rng = np.random.default_rng(seed)
    out = {}
    for split, rows in windows.items():
        w = np.stack(rows).astype(np.int64)  # (N, T + 1)
        if split == "train":
            w = w[rng.permutation(len(w))]
        out[split] = TensorDataset(torch.from_numpy(w[:, :-1].copy()), torch.from_numpy(w[:, 1:].copy()))
    logger.info("pydoc-bytes: %s windows of %d bytes", {k: len(v) for k, v in windows.items()}, context)
    return DataSplits(**out, input_shape=(context,), num_classes=256, name="pydoc-bytes", task=LANGUAGE_MODEL)


def _pydoc_bytes(seed: int, root: str | Path | None) -> DataSplits:
    return load_pydoc_bytes(seed=seed)


def _patterns(seed: int, root: str | Path | None) -> DataSplits:
    return load_pattern_splits(seed=seed)


def _digits(seed: int, root: str | Path | None) -> DataSplits:
    return load_digits_splits(seed=seed)


def _cifar10(seed: int, root: str | Path | None) -> DataSplits:
    if root is None:
        raise ValueError(f"dataset 'cifar10' needs root= the folder holding '{CIFAR10_DIR}'")
    return load_cifar10(root, seed=seed)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
USER_FRACTIONS = (0.5, 0.25, 0.25)  # train (weights) / valid (architecture) / test


def arrays_to_splits(
    x: Any, y: Any, name: str, source: str = "", seed: int = 0, fractions: Sequence[float] = USER_FRACTIONS
) -> DataSplits:
    """Images ``x`` (N, C, H, W) or (N, H, W) (uint8 in [0, 255] or floats) and labels ``y`` (N,) as stratified,
    standardised splits; labels are renumbered 0..K-1 in sorted order. ``name`` is named in every error."""
    x = np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x)
    y = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
    if x.ndim == 3:
        x = x[:, None]  # (N, 1, H, W)
    if x.ndim != 4:
        raise UserError(f"{name}: images must be (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{name}: labels must be (N,) = ({len(x)},) beside the images, got shape {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.str_)):
        raise UserError(f"{name}: labels must be integers or strings, got {y.dtype}")
    if not (np.issubdtype(x.dtype, np.number) and np.isfinite(x).all()):
        raise UserError(f"{name}: images must be finite numbers, got {x.dtype}")
    classes, labels = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise UserError(f"{name}: one class ({classes[0] if len(classes) else 'none'}); a classifier needs >= 2")
    counts = np.bincount(labels)
    if counts.min() < len(fractions):
        raise UserError(
            f"{name}: class {classes[int(counts.argmin())]} has {counts.min()} image(s); each class needs >= "
            f"{len(fractions)} (one per split)"
        )
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    idx = dict(zip(("train", "valid", "test"), stratified_split_indices(labels, fractions, seed), strict=True))
    try:
        datasets, mean, std = _standardise({k: x[i] for k, i in idx.items()}, {k: labels[i] for k, i in idx.items()})
    except ValueError as e:
        raise UserError(f"{name}: {e}") from None
    logger.info("%s: %s, %d classes, images %s", name, {k: len(i) for k, i in idx.items()}, len(classes), x.shape[1:])
    return DataSplits(**datasets, input_shape=tuple(x.shape[1:]), num_classes=len(classes), name=name, mean=mean,
                      std=std, source=source)  # fmt: skip


def load_image_folder(root: str | Path, seed: int = 0) -> DataSplits:
    """``root/<class>/<image>`` (the usual one-subfolder-per-class layout) as splits; see the module doc."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder {root}: no such directory")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(folders) < 2:
        raise UserError(f"image folder {root}: {len(folders)} class folder(s); a classifier needs >= 2 subfolders")
    files = [(f, c) for c, d in enumerate(folders) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    empty = sorted(set(range(len(folders))) - {c for _, c in files})
    if empty:
        raise UserError(f"image folder {folders[empty[0]]}: no images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"{f}: not a readable image ({e})") from None
    mode = "L" if all(im.mode in ("L", "1") for im in images) else "RGB"
    first = images[0].size
    arrays = []
    for (f, _), im in zip(files, images, strict=True):
        if im.size != first:
            raise UserError(f"{f}: {im.size[0]}x{im.size[1]} pixels, but {files[0][0]} is {first[0]}x{first[1]}; "
                            "every image must have one size")  # fmt: skip
        a = np.asarray(im.convert(mode), dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))  # (C, H, W)
    labels = np.asarray([folders[c].name for _, c in files])
    return arrays_to_splits(np.stack(arrays), labels, f"image folder {root}", str(root.resolve()), seed)


def load_npz(path: str | Path, seed: int = 0) -> DataSplits:
    """An ``.npz`` of images ``x`` and labels ``y`` as splits (no pickles are loaded); see the module doc."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise UserError(f"{path}: no array {missing[0]!r} (has: {', '.join(f.files) or 'none'}); "
                                "expected images x and labels y")  # fmt: skip
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npz ({e})") from None
    return arrays_to_splits(x, y, str(path), str(path.resolve()), seed)


def load_from_callable(spec: str, seed: int = 0) -> DataSplits:
    """``module:function`` called with ``seed=``: a :class:`DataSplits`, or ``(x, y)`` split here."""
    import importlib

    module, _, fn = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as e:
        raise UserError(f"dataset {spec}: cannot import {fn!r} from {module!r} ({e})") from None
    out = factory(seed=seed)
    if isinstance(out, DataSplits):
        return out
    if not (isinstance(out, tuple) and len(out) == 2):
        raise UserError(f"dataset {spec}: returned {type(out).__name__}, expected (x, y) or DataSplits")
    return arrays_to_splits(*out, name=f"dataset {spec}", seed=seed)


def _image_folder(seed: int, root: str | Path | None) -> DataSplits:
    if root is None:
        raise ValueError("dataset 'image-folder' needs root= the folder of class subfolders")
    return load_image_folder(root, seed)


def _npz(seed: int, root: str | Path | None) -> DataSplits:
    if root is None:
        raise ValueError("dataset 'npz' needs root= the .npz file")
    return load_npz(root, seed)


DATASETS: Registry[Callable[[int, str | Path | None], DataSplits]] = Registry("dataset")
DATASETS.register("patterns")(_patterns)
DATASETS.register("digits")(_digits)
DATASETS.register("cifar10")(_cifar10)
DATASETS.register("pydoc-bytes")(_pydoc_bytes)
DATASETS.register("image-folder")(_image_folder)
DATASETS.register("npz")(_npz)


def available_datasets() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str, seed: int = 0, root: str | Path | None = None) -> DataSplits:
    """Splits of a registered dataset by name (``root``: where local data lives, e.g. for cifar10), or of a
    ``module:function`` of the user's."""
    if is_callable_spec(name):
        return load_from_callable(name, seed)
    return DATASETS.get(name)(seed, root)


def is_callable_spec(name: str) -> bool:
    """Whether a dataset name is a ``module:function`` (both parts non-empty)."""
    module, sep, fn = name.partition(":")
    return bool(sep and module and fn)
