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
