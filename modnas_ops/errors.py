"""The error contract of the library and its entry points.

:class:`UserError` is bad input — a config field, a file, a device name, a request — and carries one line that
names what is wrong (``<file or field>: <what is wrong>``). Entry points print it as ``error: <line>`` and exit
with code 2 (their MLflow run ends FAILED). Every other exception is an internal error and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: one line naming the file or field and what is wrong with it."""


__all__ = ["UserError"]
