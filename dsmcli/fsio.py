"""Files written atomically, and the other file-system rules every command follows.

* **Atomic replace** (``atomic_file``, ``write_bytes``, ``write_text``, ``write_json``): the
  content goes to a private temporary file in the destination's directory, created by
  ``tempfile.mkstemp`` (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random name, so an existing file or
  a planted symlink is never opened), is fsynced, and is renamed over the destination
  (``rename`` replaces a symlink itself, never its target); the directory is fsynced after.
  A reader sees the old file or the new one, never a part of either. A write that fails (disk
  full, permissions) removes its temporary file, leaves the destination as it was and raises
  an ``OSError`` whose ``filename`` is the destination.
* **Never overwrite** (``publish_new``): the finished temporary file is hard-linked to the first
  free name of a sequence (``link`` fails on an existing name, so two writers can never both
  take one) — choosing a name and creating it are one atomic step.
* **Appends** (``append_line``): one ``write`` of one whole line to a file opened with
  ``O_APPEND | O_NOFOLLOW``; concurrent appenders never interleave within a line, and a line
  cut short by a crash is the last one, without its newline (readers skip it).
* **Leftovers**: temporary names are ``.NAME.tmp-HOST-PID-RANDOM``. Every atomic write first
  removes the leftovers in its directory of processes of this host that no longer exist (a
  writer killed mid-write), never those of a live writer.
* **JSON** holds ``null`` where a value is NaN or infinite (``json_safe``), never the bare
  ``NaN``/``Infinity`` that strict parsers reject.

This module imports nothing heavy (``dsm runs`` uses it).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"
_TEMP_RE = re.compile(r"^\..+\.tmp-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_prefix(final: Path) -> str:
    return f".{final.name[:80]}.tmp-{_HOST}-{os.getpid()}-"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is the temporary file of an atomic write (hidden from listings)."""
    return _TEMP_RE.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(directory: Path) -> list[Path]:
    """Remove the temporary files in ``directory`` left by dead processes of this host."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.match(name)
        if m and m["host"] == _HOST and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"])):
            try:
                os.unlink(directory / name)
                removed.append(directory / name)
            except OSError:
                pass
    return removed


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _named(e: OSError, path: Path) -> OSError:
    """The same error, naming the destination (not the temporary file)."""
    err = OSError(e.errno, e.strerror or str(e), str(path))
    err.__cause__ = None
    return err


@contextmanager
def _temporary(final: Path):
    """A binary file object on a fresh temporary file next to ``final``; yields (file, temp path).
    The temporary file is removed unless the caller renamed or linked it away."""
    final = Path(final)
    clean_stale(final.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(final), dir=final.parent)
    except OSError as e:
        raise _named(e, final) from None
    tmp = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide run files from other users
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        _unlink(tmp)
        raise _named(e, final) from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@contextmanager
def atomic_file(path: str | Path):
    """``with atomic_file(p) as f: f.write(b"...")`` — ``p`` appears whole at the end, or not at all."""
    path = Path(path)
    with _temporary(path) as (f, tmp):
        yield f
    try:
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        raise _named(e, path) from None
    fsync_dir(path.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def json_safe(obj):
    """``obj`` with NaN/±inf floats replaced by ``None`` and numpy scalars/arrays made plain."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays
    if tolist is not None:
        return json_safe(tolist())
    return str(obj)


def dumps(obj, **kw) -> str:
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def write_json(path: str | Path, obj) -> None:
    write_text(path, dumps(obj, indent=2) + "\n")


def publish_new(candidates, write) -> Path:
    """Write a new file through ``write(f)`` and give it the first name of ``candidates`` (an
    iterable of paths in one directory) that does not exist yet; never replaces a file."""
    candidates = iter(candidates)
    first = Path(next(candidates))
    with _temporary(first) as (f, tmp):
        write(f)
    try:
        for path in itertools.chain([first], candidates):
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue
            except OSError as e:
                raise _named(e, Path(path)) from None
            fsync_dir(Path(path).parent)
            return Path(path)
        raise FileExistsError(f"no free name among the candidates of {first}")
    finally:
        _unlink(tmp)


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` (a newline is added) with one ``write`` call on an ``O_APPEND`` descriptor."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        raise _named(e, path) from None
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        raise _named(e, path) from None
    finally:
        os.close(fd)


def regular_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a data file (missing, a directory, a device, a FIFO, …),
    or None when it is a regular file. Checked without opening it (opening a FIFO blocks)."""
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a parent of it is a file)"
    except PermissionError:
        return "cannot be read (permission denied on the path)"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None if os.access(path, os.R_OK) else "cannot be read (permission denied)"
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"is {kind}, not a regular file"
