"""One writer per run: an advisory OS lock on ``RUN_DIR/.lock``, held for the whole training.

``hold(run_dir)`` takes an exclusive ``flock`` on the lock file (created once, never removed:
removing a lock file lets two processes lock two different files) and writes the holder's pid,
host, start time and command line into it. The OS drops the lock however its holder ends
(exit, exception, ``kill -9``, a crash), so there is never a stale lock to clean up by hand.
A second writer is refused at once with a ``UserError`` naming the holder: "RUN is being trained
by process N on HOST since T".

Readers never block: ``holder(run_dir)`` probes with a non-blocking *shared* lock that is
released immediately, and reports the live holder (or ``None``). A writer that meets such a probe
retries for ``RETRY_S`` before refusing, so a ``dsm runs`` listing can never make a training
fail. ``flock`` works across processes of one machine and, on Linux, over NFS (it is mapped to
POSIX byte-range locks there), so runs on a shared file system keep one writer too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from dsmcli.errors import UserError

LOCK_NAME = ".lock"
RETRY_S = 1.0


def _describe(info: dict | None, run_dir: Path) -> str:
    if not info:
        return f"{run_dir} is being trained by another process (its lock is held)"
    host = f" on {info['host']}" if info.get("host") and info.get("host") != socket.gethostname() else ""
    what = f" ({info['command']})" if info.get("command") else ""
    return f"{run_dir} is being trained by process {info.get('pid', '?')}{host} since {info.get('since', '?')}{what}"


def _read_info(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode() or "null")
        return info if isinstance(info, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _open(path: Path, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)


def holder(run_dir: str | Path) -> dict | None:
    """The live holder of the run's lock (pid, host, since, command), or None when no process
    holds it. Never blocks and never makes a writer fail."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = _open(path, os.O_RDONLY)
    except OSError:
        return None  # no lock file: never trained by a locking dsm
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _read_info(fd) or {"pid": None}
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(run_dir: str | Path) -> str | None:
    info = holder(run_dir)
    return None if info is None else _describe(info, Path(run_dir))


@contextmanager
def hold(run_dir: str | Path, command: str | None = None):
    """Hold the run's write lock for the duration of the ``with`` block (exit 2 if taken)."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_NAME
    try:
        fd = _open(path, os.O_RDWR | os.O_CREAT)
    except OSError as e:
        raise UserError(f"{run_dir}: cannot open its lock file '{path}': {e.strerror}") from None
    try:
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"{run_dir}: cannot lock '{path}': {e.strerror}") from None
                if time.monotonic() > deadline:
                    raise UserError(_describe(_read_info(fd), run_dir) +
                                    "; one writer per run: wait for it to finish, or stop it "
                                    "(Ctrl-C / kill PID keeps its last checkpoint)") from None
                time.sleep(0.02)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": command or " ".join(["dsm", *sys.argv[1:]])[:300]}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # the lock itself is what counts; the description is a courtesy
        try:
            yield info
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass
    finally:
        os.close(fd)
