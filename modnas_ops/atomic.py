"""Atomic file writes: a crash or kill never leaves a half-written checkpoint, model or table behind."""

from __future__ import annotations

import errno
import io
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``/proc/self/status``); elsewhere
    set and restored at once under a lock (``os.umask`` is process-global)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def new_file_mode(path: str | Path) -> int:
    """Mode for a file written in place of ``path``: the existing file's permission bits, else what ``open``
    would give a new file (``0o666 & ~umask``), not ``tempfile``'s 0600."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """``write(tmp_path)`` to a temp file beside ``path``, then ``os.replace`` it into place (with the replaced
    file's mode, or the umask's for a new file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode(p))
        os.replace(tmp, p)
    except OSError as e:
        if e.errno == errno.ENOSPC:  # disk full: one clear line naming the file (the old one stays intact)
            raise UserError(f"{p}: no space left on device (not written; the previous file is intact)") from e
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that either fully replaces ``path`` or leaves it untouched. Serialised in memory first and
    written with a plain file write, so a full disk raises ``OSError(ENOSPC)`` (torch's own file writer reports
    it as an unspecific RuntimeError)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())

    return atomic_write(path, write)
