"""The error contract of the library and its entry points.

:class:`UserError` is bad input — a config field, a file, a device name, a request — and carries one line that
names what is wrong (``<file or field>: <what is wrong>``). Entry points print it as ``error: <line>`` and exit
with code 2 (their MLflow run ends FAILED). Every other exception is an internal error and keeps its traceback.
:class:`Terminated` (SIGTERM) and Ctrl-C end the run KILLED; the exit codes are 143 and 130.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: one line naming the file or field and what is wrong with it."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised by the handler :func:`modnas_ops.tracking.start_run` installs): the run ends
    KILLED and the entry point exits with 128 + SIGTERM = 143, like a process the signal had killed."""

    exit_code = 143


__all__ = ["Terminated", "UserError"]
