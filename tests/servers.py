"""Real server processes for the integration tests: a free loopback port, and a process run until its HTTP
endpoint answers (then stopped)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(
    cmd: Sequence[str], log: Path, ready_url: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[subprocess.Popen]:  # fmt: skip
    """``cmd`` with its output in ``log``, yielded once ``ready_url`` answers HTTP (any status: an auth server's
    401 is an answer); terminated after. Fails with the log's tail if it dies or does not answer in time."""
    with log.open("w") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(ready_url, timeout=2):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer in {timeout_s:.0f} s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
