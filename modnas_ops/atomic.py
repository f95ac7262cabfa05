"""Atomic file writes: a crash or kill never leaves a half-written checkpoint, model or table behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp_path)`` to a temp file beside ``path``, then ``os.replace`` it into place."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that either fully replaces ``path`` or leaves it untouched."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
