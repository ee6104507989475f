"""One base exception for the whole suite.

The CLI turns any `TocsrError` into one line on stderr and exit code 1; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class TocsrError(Exception):
    """An error a user can act on: the message says what was wrong, the value, and how to fix it."""


class ConfigError(TocsrError):
    """A configuration file or value (profile, preset, spec) is malformed."""


class ArtifactError(TocsrError):
    """A file written by a stage is missing, truncated, corrupted or of another kind/version."""
