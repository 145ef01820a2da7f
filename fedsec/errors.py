"""Error types of the fedsec application layer.

Every error a user can cause through a config, a dataset or a command line is a ``FedsecError``, so
the CLI can catch one type and exit with a clear message. Messages say "got X; want Y".
"""

from __future__ import annotations


class FedsecError(Exception):
    """Base class of every error raised by ``fedsec``."""


class ConfigError(FedsecError, ValueError):
    """A configuration value (name, type, range, combination) is invalid."""


class DataError(FedsecError):
    """A dataset file is missing, unreadable or malformed."""


class MissingExtraError(FedsecError, ImportError):
    """An optional dependency (a ``pip install "fedsec[EXTRA]"`` extra) is not installed."""
