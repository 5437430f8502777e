"""The errors rap-hf raises on purpose, about what the user asked for (a bad flag, a missing column, a folder
holding another run). The command line prints these as one line; any other exception is a bug and keeps its
traceback."""

from __future__ import annotations


class RAPUserError(ValueError):
    """Something the user can fix: the message says what and how. A `ValueError`, so callers that caught
    `ValueError` before keep working."""
