"""The conf files an operator edits: parse, validate, merge, diff.

- :mod:`.converters`: conf text -> typed values (``parse_duration``, ``parse_rate``, ...);
- :mod:`.settings`: the settings table :data:`SETTINGS`, the one source of every key and its
  default, and the typed results (:class:`Config`, :class:`NodeConfig`, ...);
- :mod:`.loader`: :func:`load_config`, which reads and validates the files and raises one
  :class:`ConfigError` listing every problem (``FILE: [section] key = value: expected ...``), so a
  reload keeps the previous policy;
- :mod:`.diff`: :func:`diff_config` (what a reload changes) and :func:`describe_limits`.
"""
from __future__ import annotations

from esl_guard.config.converters import (
    DURATION_EXPECTED,
    RATE_EXPECTED,
    parse_duration,
    parse_rate,
    sqlite_file,
)
from esl_guard.config.diff import describe_limits, diff_config
from esl_guard.config.loader import ConfigError, load_config
from esl_guard.config.settings import (
    DEFAULT_DB_URL,
    DEFAULT_JOURNAL,
    DEFAULT_NODE,
    LIMIT_KEYS,
    SETTINGS,
    ClusterConfig,
    Config,
    DatabaseConfig,
    LoggingConfig,
    MetricsConfig,
    NodeConfig,
    NotifyConfig,
    Setting,
    default_value,
    settings_in,
)

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_JOURNAL",
    "DEFAULT_NODE",
    "DURATION_EXPECTED",
    "LIMIT_KEYS",
    "RATE_EXPECTED",
    "SETTINGS",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NodeConfig",
    "NotifyConfig",
    "Setting",
    "default_value",
    "describe_limits",
    "diff_config",
    "load_config",
    "parse_duration",
    "parse_rate",
    "settings_in",
    "sqlite_file",
]
