"""Persistence of esl-guard: audit trail, account locks and the daemon status.

`Store` is synchronous (run it in a worker thread under gevent); `AuditWriter` (writer.py)
is the daemon's gevent front end; `Journal` (journal.py) keeps ops the database could not
take yet.
"""
from __future__ import annotations

from esl_guard.store.errors import StoreDataError, StoreError
from esl_guard.store.journal import Journal
from esl_guard.store.repository import LockInfo, Store

__all__ = ["Journal", "LockInfo", "Store", "StoreDataError", "StoreError"]
