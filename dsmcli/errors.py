"""Error types that the command line maps to exit codes.

``UserError`` is anything the user can fix (bad config, missing file, unknown name): the CLI
prints its message without a traceback and exits 2. Anything else is an internal failure
(exit 1). ``TrainingDiverged`` and ``TrainingInterrupted`` carry their own exit codes.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input; the message names the field or file and the fix."""

    exit_code = 2


class NothingToSample(UserError):
    """The run's model has neither a score read-out nor a decoder (e.g. AutoRec)."""


class TrainingDiverged(Exception):
    """A non-finite loss or gradient stopped training; the last good checkpoint is kept."""

    exit_code = 1


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM stopped training cleanly after a final checkpoint."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def quote(value, limit: int = 60) -> str:
    """``value`` as text, cut to ``limit`` characters (error messages never echo a huge input)."""
    import reprlib

    shortener = reprlib.Repr()  # bounded however deep or long the value is (keyword arguments: 3.12+)
    shortener.maxlevel, shortener.maxlist, shortener.maxtuple, shortener.maxdict = 3, 6, 6, 6
    shortener.maxstring = shortener.maxother = limit
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
    text = shortener.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"
