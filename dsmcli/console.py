"""Messages to the person at the terminal: notes and warnings on stderr (never stdout, whose
last line is the path a command produced), silenced by ``--quiet``."""

from __future__ import annotations

import os
import sys

_quiet = os.environ.get("DSM_QUIET", "") not in ("", "0")  # workers of a compare run quiet


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = bool(value)


def quiet() -> bool:
    return _quiet


def note(message: str) -> None:
    if not _quiet:
        print(f"note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
