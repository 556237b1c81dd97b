"""Checkpoints that are complete or absent, verified on restore.

A checkpoint is a directory ``checkpoints/step_<NNNNNNNN>/`` holding ``state.msgpack`` (every
leaf of the training state keyed by its pytree path, serialised with flax's msgpack) and
``manifest.json`` (step, byte count, SHA-256). It is written under a temporary name, fsynced and
renamed into place, so an interrupted save leaves no directory that looks complete. Restoring
reads into a *target* built from a fresh model and optimiser (structure, shapes and dtypes are
checked leaf by leaf), and a checkpoint whose bytes do not match its manifest is reported and
skipped in favour of the previous one. A checkpoint whose tree does not fit the configured
model (a leaf missing, extra, or of another shape or dtype: an edited ``model`` section, or a
library upgrade that renamed parameters) is ``IncompatibleCheckpoint``: the caller refuses to go
on rather than falling back, since every older checkpoint would differ in the same way. A reader
racing the writer's rotation (the checkpoint it listed was deleted) lists again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

STEP_RE = re.compile(r"^step_(\d{8,})$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flatten(tree) -> dict[str, object]:
    import jax

    from dsmcli.parallel import to_host

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): to_host(leaf) for path, leaf in leaves}


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_RE.match(p.name)) and (p / "manifest.json").is_file()]
    return sorted(found)


def save(run_dir: Path, step: int, state, keep: int) -> Path:
    """Write the checkpoint of ``step`` atomically and keep only the newest ``keep``.
    Only the run's single writer (it holds the run lock) calls this, so the ``.tmp-*`` directories
    found here are leftovers of a writer that was killed."""
    from flax import serialization

    root = Path(run_dir) / "checkpoints"
    root.mkdir(exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}-{os.getpid()}"
    tmp.mkdir()
    try:
        payload = serialization.msgpack_serialize(_flatten(state))
        _write(tmp / "state.msgpack", payload, final / "state.msgpack")
        if os.environ.get("DSM_TEST_KILL_DURING_CHECKPOINT") == str(step):  # fault injection for the tests
            os.kill(os.getpid(), signal.SIGKILL)
        manifest = {"step": step, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        _write(tmp / "manifest.json", json.dumps(manifest).encode(), final / "manifest.json")
        _fsync_dir(tmp)
        if final.exists():  # same step saved again (e.g. resumed and re-reached): replace whole
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    for _, old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write(path: Path, data: bytes, shown: Path) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(shown)) from None


class CorruptCheckpoint(Exception):
    """The checkpoint's bytes are unreadable or do not match its manifest."""


class IncompatibleCheckpoint(Exception):
    """The checkpoint is intact but its tree does not fit the configured model."""


class VanishedCheckpoint(Exception):
    """The checkpoint was deleted while being read (rotated away by the run's writer)."""


def load(path: Path, target):
    """Read one checkpoint into the structure of ``target``; raises ``CorruptCheckpoint``,
    ``IncompatibleCheckpoint`` or ``VanishedCheckpoint``."""
    import jax
    import numpy as np
    from flax import serialization

    try:
        manifest = json.loads((path / "manifest.json").read_text())
        payload = (path / "state.msgpack").read_bytes()
    except FileNotFoundError as e:
        raise VanishedCheckpoint(str(e)) from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CorruptCheckpoint(f"unreadable: {str(e)[:100]}") from None
    if not isinstance(manifest, dict):
        raise CorruptCheckpoint("manifest.json is not a JSON object")
    if len(payload) != manifest.get("bytes") or hashlib.sha256(payload).hexdigest() != manifest.get("sha256"):
        raise CorruptCheckpoint(f"state.msgpack has {len(payload)} bytes that do not match its manifest")
    if not isinstance(manifest.get("step"), int):
        raise CorruptCheckpoint("manifest.json has no integer step")
    try:
        saved = serialization.msgpack_restore(payload)
    except Exception as e:  # the hash matched, so the writer itself wrote something unreadable
        raise CorruptCheckpoint(f"state.msgpack does not decode ({type(e).__name__})") from None
    if not isinstance(saved, dict):
        raise CorruptCheckpoint("state.msgpack does not hold a mapping of leaves")
    paths, treedef = jax.tree_util.tree_flatten_with_path(target)
    leaves, wanted, misfits = [], set(), []
    for key_path, ref in paths:
        key = jax.tree_util.keystr(key_path)
        wanted.add(key)
        if key not in saved:
            misfits.append((key, f"the configured model has parameter {key}, which the checkpoint lacks"))
            continue
        leaf = np.asarray(saved[key])
        if leaf.shape != np.shape(ref) or leaf.dtype != np.asarray(ref).dtype:
            misfits.append((key, f"parameter {key} is {leaf.dtype}{list(leaf.shape)} in the checkpoint but "
                                 f"{np.asarray(ref).dtype}{list(np.shape(ref))} in the configured model"))
        leaves.append(leaf)
    misfits += [(key, f"the checkpoint has parameter {key}, which the configured model lacks")
                for key in sorted(set(saved) - wanted)]
    if misfits:  # name a network parameter before an optimiser-state copy of it
        key, first = min(misfits, key=lambda m: not m[0].startswith("['params']"))
        more = f" (and {len(misfits) - 1} more)" if len(misfits) > 1 else ""
        raise IncompatibleCheckpoint(first + more)
    return manifest["step"], jax.tree_util.tree_unflatten(treedef, leaves)


def restore_latest(run_dir: Path, target, *, quiet: bool = False):
    """(step, state) of the newest checkpoint that verifies, or None when there is none.

    A corrupt checkpoint is reported and the previous one tried; ``IncompatibleCheckpoint``
    propagates (every older one would not fit either). When every checkpoint is corrupt,
    ``CorruptCheckpoint`` is raised (never a silent fresh start)."""
    for _attempt in range(5):  # a concurrent writer may rotate checkpoints away while we read
        found = checkpoints(run_dir)
        if not found:
            return None
        problems = []
        vanished = False
        for step, path in reversed(found):
            try:
                restored = load(path, target)
            except VanishedCheckpoint:
                vanished = True
                break
            except CorruptCheckpoint as e:
                problems.append(f"{path.name}: {e}")
                continue
            if not quiet:  # said only when an older checkpoint is used instead
                for problem in problems:
                    name, why = problem.split(": ", 1)
                    print(f"warning: checkpoint {path.parent / name} is corrupt ({why}); using {path.name}",
                          file=sys.stderr)
            return restored
        if not vanished:
            raise CorruptCheckpoint("every checkpoint fails its integrity check (" + "; ".join(problems[:3]) + ")")
    return None
