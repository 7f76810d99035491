"""Destination classes (issue 12): which class a dialled number is in, and the limits of an
account's calls to a class.  Pure: built once from the conf, read on every new call.

- The dialled number is the A-leg's ``Caller-Destination-Number``; a leading ``+`` is ignored.
- The longest matching prefix wins; a number in no class has only its account's limits.
- An ``exempt`` class (emergency numbers) matches only the WHOLE number: an emergency number is
  dialled alone, and a prefix would let a locked account dial ``1129...`` free of every limit.
- A class's limits apply in addition to the account's: a premium call counts in both.  Its
  limits are the keys set in ``[destination:NAME]``, overridden per account by ``CLASS.KEY``
  in ``[account:X]``; every other limit of the class is off, and the account's own settings
  (``hangup_cause``, ``dry_run``, ``lock_after``, ...) apply to its class calls too.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from esl_guard.model import Limits

#: Limits a class may set (off in a class unless it sets them).
CLASS_LIMIT_KEYS: tuple[str, ...] = (
    "max_concurrent_calls", "max_call_rate", "max_call_duration", "max_minutes",
    "max_distinct_destinations", "max_short_calls", "max_sequential_destinations",
    "max_source_ips", "caller_id_allowed", "max_inbound_concurrent_calls")
#: Every key a class (and ``CLASS.KEY`` in an account) may set; ``short_call`` and
#: ``warn_only`` are inherited from the account unless the class sets them.
CLASS_KEYS: tuple[str, ...] = (*CLASS_LIMIT_KEYS, "short_call", "warn_only")
#: The metric label value of a call in no class.
NO_CLASS = "none"


def dialled(number: str | None) -> str:
    """The number as matched against prefixes: a leading ``+`` removed."""
    if not number:
        return ""
    return number[1:] if number[0] == "+" else number


@dataclass(frozen=True)
class DestinationClass:
    """One ``[destination:NAME]`` section: its prefixes (digits), whether it is exempt, and
    the keys it sets (converted values, ``CLASS_KEYS`` only)."""

    name: str
    prefixes: tuple[str, ...]
    exempt: bool = False
    values: Mapping[str, Any] = field(default_factory=dict)


def class_limits(account: Limits, cls: DestinationClass,
                 overrides: Mapping[str, Any] | None = None) -> Limits:
    """The limits of an account's calls to ``cls``: the account's settings, every class
    limit off, then the class's keys, then the account's ``CLASS.KEY`` overrides."""
    values: dict[str, Any] = {k: None for k in CLASS_LIMIT_KEYS}
    values.update(cls.values)
    if overrides:
        values.update(overrides)
    return replace(account, **values)


class Destinations:
    """The configured classes: :meth:`classify` a number, :meth:`limits` of an account's calls
    to a class.  ``overrides``: account -> class -> key -> value (``CLASS.KEY``);
    ``accounts``: the accounts with a section of their own (others use ``policy``)."""

    def __init__(self, classes: Iterable[DestinationClass] = (), policy: Limits | None = None,
                 accounts: Mapping[str, Limits] | None = None,
                 overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> None:
        self.classes: Mapping[str, DestinationClass] = MappingProxyType(
            {c.name: c for c in classes})
        self.exempt = frozenset(c.name for c in self.classes.values() if c.exempt)
        self._exact: dict[str, str] = {}   # exempt classes: the whole number
        self._prefix: dict[str, str] = {}  # other classes: prefix -> class
        for c in self.classes.values():
            table = self._exact if c.exempt else self._prefix
            for p in c.prefixes:
                table[p] = c.name
        self._lengths = sorted({len(p) for p in self._prefix}, reverse=True)
        policy = policy or Limits()
        self._policy = {n: class_limits(policy, c) for n, c in self.classes.items()}
        overrides = overrides or {}
        self._accounts: dict[str, dict[str, Limits]] = {
            account: {n: class_limits(lim, c, overrides.get(account, {}).get(n))
                      for n, c in self.classes.items()}
            for account, lim in (accounts or {}).items()}
        #: bounded metric label values: the class names and :data:`NO_CLASS`
        self.labels = frozenset((*self.classes, NO_CLASS))

    def __bool__(self) -> bool:
        return bool(self.classes)

    def classify(self, number: str | None) -> str | None:
        """The class of a dialled number (None: in no class)."""
        digits = dialled(number)
        if not digits:
            return None
        exact = self._exact.get(digits)
        if exact is not None:
            return exact
        prefix = self._prefix
        for n in self._lengths:
            if n <= len(digits):
                name = prefix.get(digits[:n])
                if name is not None:
                    return name
        return None

    def limits(self, account: str, cls: str) -> Limits:
        """The limits of ``account``'s calls to class ``cls`` (a configured class)."""
        own = self._accounts.get(account)
        return own[cls] if own is not None else self._policy[cls]

    def label(self, cls: str | None) -> str:
        """The metric label of a class: its name while configured, else :data:`NO_CLASS`."""
        return cls if cls is not None and cls in self.classes else NO_CLASS
