"""Exceptions raised by the store: messages are safe to show to an operator."""
from __future__ import annotations


class StoreError(Exception):
    """A database operation failed (unreachable, timeout, schema missing, ...).

    The message never contains the database password.  Most of these are transient: the
    caller may retry later.
    """


class StoreDataError(StoreError):
    """The database rejected the data itself (malformed op, constraint violation).

    Retrying the same data will fail again: the caller should set it aside instead.
    """
