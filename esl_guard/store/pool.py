"""Run blocking calls in a gevent ThreadPool without gevent printing their exceptions.

gevent reports an exception raised in a pool worker on stderr (with a traceback) even when the
caller handles it; an operator must never see a traceback for an expected database outage.  So
the worker catches it and the calling greenlet re-raises it.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gevent.threadpool import ThreadPool

T = TypeVar("T")


def _capture(fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except Exception as exc:  # noqa: BLE001 - handed back to the caller, re-raised there
        return False, exc


def call_in(pool: ThreadPool, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
    """``fn(*args)`` in ``pool``; its result, or its exception raised here."""
    ok, value = pool.spawn(_capture, fn, args).get(timeout=timeout)
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
