"""Checkpoints that are complete or absent, verified on restore.

A checkpoint is a directory ``checkpoints/step_<NNNNNNNN>/`` holding ``state.msgpack`` (every
leaf of the training state keyed by its pytree path, serialised with flax's msgpack) and
``manifest.json`` (step, byte count, SHA-256). It is written under a temporary name, fsynced and
renamed into place, so an interrupted save leaves no directory that looks complete. Restoring
reads into a *target* built from a fresh model and optimiser (structure, shapes and dtypes are
checked leaf by leaf), and a checkpoint whose bytes do not match its manifest is reported and
skipped in favour of the previous one.
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
    """Write the checkpoint of ``step`` atomically and keep only the newest ``keep``."""
    from flax import serialization

    root = Path(run_dir) / "checkpoints"
    root.mkdir(exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a process killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}-{os.getpid()}"
    tmp.mkdir()
    payload = serialization.msgpack_serialize(_flatten(state))
    with open(tmp / "state.msgpack", "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("DSM_TEST_KILL_DURING_CHECKPOINT") == str(step):  # fault injection for the tests
        os.kill(os.getpid(), signal.SIGKILL)
    manifest = {"step": step, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    with open(tmp / "manifest.json", "w") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # same step saved again (e.g. resumed and re-reached): replace whole
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for _, old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class CorruptCheckpoint(Exception):
    pass


def load(path: Path, target):
    """Read one checkpoint into the structure of ``target``; raises ``CorruptCheckpoint``."""
    import jax
    import numpy as np
    from flax import serialization

    try:
        manifest = json.loads((path / "manifest.json").read_text())
        payload = (path / "state.msgpack").read_bytes()
    except (OSError, ValueError) as e:
        raise CorruptCheckpoint(f"unreadable: {e}") from None
    if len(payload) != manifest.get("bytes") or hashlib.sha256(payload).hexdigest() != manifest.get("sha256"):
        raise CorruptCheckpoint(f"state.msgpack has {len(payload)} bytes that do not match its manifest")
    saved = serialization.msgpack_restore(payload)
    paths, treedef = jax.tree_util.tree_flatten_with_path(target)
    leaves = []
    for key_path, ref in paths:
        key = jax.tree_util.keystr(key_path)
        if key not in saved:
            raise CorruptCheckpoint(f"missing leaf {key} (was the config changed?)")
        leaf = np.asarray(saved[key])
        if leaf.shape != np.shape(ref) or leaf.dtype != np.asarray(ref).dtype:
            raise CorruptCheckpoint(f"leaf {key} has shape {leaf.shape} {leaf.dtype}, expected {np.shape(ref)}")
        leaves.append(leaf)
    return manifest["step"], jax.tree_util.tree_unflatten(treedef, leaves)


def restore_latest(run_dir: Path, target):
    """(step, state) of the newest checkpoint that verifies, or None; bad ones are reported."""
    for step, path in reversed(checkpoints(run_dir)):
        try:
            return load(path, target)
        except CorruptCheckpoint as e:
            print(f"warning: checkpoint {path} is corrupt ({e}); trying the previous one", file=sys.stderr)
    return None
