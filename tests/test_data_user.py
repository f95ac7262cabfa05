"""Bring your own data: an image folder, an .npz, a module:function; bad data named in one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modnas_ops.data import arrays_to_splits, get_dataset
from modnas_ops.errors import UserError


def make_folder(root, classes=("cat", "dog", "owl"), per_class=8, size=(12, 12), mode="RGB"):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            pixels = rng.integers(0, 256, shape, dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    return root


def test_image_folder_splits_stratified_and_deterministic(tmp_path) -> None:
    root = make_folder(tmp_path / "imgs")
    a, b = get_dataset("image-folder", seed=0, root=root), get_dataset("image-folder", seed=0, root=root)
    assert a.input_shape == (3, 12, 12) and a.num_classes == 3
    assert a.sizes() == {"train": 12, "valid": 6, "test": 6}
    assert a.digest() == b.digest() and a.source == str(root.resolve())
    for split in ("train", "valid", "test"):
        labels = getattr(a, split).tensors[1]
        assert torch.bincount(labels, minlength=3).tolist() == [len(labels) // 3] * 3  # stratified
    assert get_dataset("image-folder", seed=1, root=root).digest() != a.digest()  # the seed deals other splits
    train = a.train.tensors[0]
    assert torch.allclose(train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)  # standardised on train statistics


def test_grayscale_folder_keeps_one_channel(tmp_path) -> None:
    data = get_dataset("image-folder", root=make_folder(tmp_path / "g", mode="L"))
    assert data.input_shape == (1, 12, 12)


def test_image_folder_errors_name_the_file(tmp_path) -> None:
    root = make_folder(tmp_path / "bad")
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"broken\.png: not a readable image"):
        get_dataset("image-folder", root=root)
    (root / "dog" / "broken.png").unlink()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "owl" / "small.png")
    with pytest.raises(UserError, match=r"small\.png: 12x10 pixels, but .*cat/0\.png is 12x12"):
        get_dataset("image-folder", root=root)
    one = make_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(UserError, match="1 class folder"):
        get_dataset("image-folder", root=one)
    with pytest.raises(UserError, match="no such directory"):
        get_dataset("image-folder", root=tmp_path / "missing")


def test_npz(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.random((30, 2, 6, 6), dtype=np.float32), y=np.repeat([3, 7], 15))
    data = get_dataset("npz", root=path)
    assert data.input_shape == (2, 6, 6) and data.num_classes == 2
    np.savez(tmp_path / "nokey.npz", images=np.zeros((4, 6, 6)))
    with pytest.raises(UserError, match=r"nokey\.npz: no array 'x' \(has: images\)"):
        get_dataset("npz", root=tmp_path / "nokey.npz")
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((10, 6, 6)), y=np.zeros(9, dtype=int))
    with pytest.raises(UserError, match=r"mismatch\.npz: labels must be \(N,\) = \(10,\)"):
        get_dataset("npz", root=tmp_path / "mismatch.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"junk\.npz: not a readable \.npz"):
        get_dataset("npz", root=tmp_path / "junk.npz")


def make_tensors(seed: int = 0):
    """A module:function loader for the test: (x, y) tensors."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(40, 1, 8, 8, generator=g), torch.arange(40) % 4


def test_module_function(tmp_path) -> None:
    data = get_dataset("test_data_user:make_tensors", seed=0)
    assert data.num_classes == 4 and data.input_shape == (1, 8, 8)
    with pytest.raises(UserError, match="cannot import 'nope'"):
        get_dataset("test_data_user:nope")


def test_one_class_and_tiny_classes_are_refused() -> None:
    with pytest.raises(UserError, match="one class"):
        arrays_to_splits(np.zeros((6, 4, 4)), np.zeros(6, dtype=int), "mine")
    with pytest.raises(UserError, match="class 1 has 2 image"):
        arrays_to_splits(np.random.default_rng(0).random((8, 4, 4)), np.array([0] * 6 + [1] * 2), "mine")


def test_search_config_accepts_a_user_loader_and_names_unknown_datasets() -> None:
    from modnas_ops.config import ConfigError
    from modnas_ops.objectives.supernet import SupernetConfig

    assert SupernetConfig(dataset="mypkg.data:load").dataset == "mypkg.data:load"
    with pytest.raises(ConfigError, match="dataset"):
        SupernetConfig(dataset="imagenet")
