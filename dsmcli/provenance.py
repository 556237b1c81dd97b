"""Where a run's data came from, so that a run finds it again from any directory — or says that
it moved or changed.

Every file path of a config (``data.path``) is made absolute when the config is validated
(``section.FilePath``). When a run starts, ``record`` lists in ``meta.json`` under
``data_files``, per path key: the path as written, the absolute path, and each file read
through it (a file, or the files of a directory that the data kind reads) with its size,
modification time and SHA-256. ``verify`` (``dsm eval``, ``dsm sample``, ``--resume``,
``dsm compare``'s reuse) compares the files the run's config names now with that record: a
missing file or one whose size or hash differs is a ``UserError`` naming it, so a run never
silently evaluates other data. The hash is recomputed only when size or modification time
differ from the record.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dsmcli.errors import UserError

MAX_FILES = 10_000  # files of one data directory that are hashed


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_files(data_cfg, path: str) -> list[Path]:
    """The files the data kind reads through ``path`` (its ``source_files(cfg)`` if it has one;
    else the file itself, or every regular file under the directory)."""
    from dsmcli import data

    module = data.REGISTRY.get(data_cfg.kind)
    hook = getattr(module, "source_files", None)
    if hook is not None:
        return [Path(p) for p in hook(data_cfg)]
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file())[:MAX_FILES]
    return [p]


def _describe(path: Path, base: Path) -> dict:
    st = path.stat()
    name = "" if path == base else str(path.relative_to(base))
    return {"name": name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256(path)}


def record(cfg) -> list[dict]:
    """The ``data_files`` entry of ``meta.json`` for a validated experiment config."""
    out = []
    written = cfg.paths_as_written()
    for key, path in cfg.file_paths().items():
        base = Path(path)
        files = [f for f in source_files(cfg.data, path) if f.is_file()]
        out.append({"key": key, "as_written": written.get(key, path), "path": path,
                    "files": [_describe(f, base) for f in files]})
    return out


def verify(run_dir: Path, cfg, meta: dict | None) -> None:
    """Refuse (``UserError``) when a data file recorded at the start of the run is missing or
    has changed; runs from before this record existed are not checked."""
    entries = (meta or {}).get("data_files")
    if not isinstance(entries, list):
        return
    paths = cfg.file_paths()
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("key") not in paths:
            continue
        base = Path(paths[entry["key"]])
        started = f"'{entry.get('as_written')}' when the run started" if entry.get("as_written") else "when the run started"
        fix = (f"put it back, or point {entry['key']} in {run_dir / 'config.yaml'} at the same data; "
               f"other data is a new run (dsm train --config)")
        for item in entry.get("files") or []:
            f = base / item["name"] if item.get("name") else base
            try:
                st = f.stat()
            except OSError:
                raise UserError(f"{entry['key']}: '{f}' (given as {started}) no longer exists; {fix}") from None
            if st.st_size == item.get("bytes") and st.st_mtime_ns == item.get("mtime_ns"):
                continue
            if st.st_size != item.get("bytes") or sha256(f) != item.get("sha256"):
                raise UserError(f"{entry['key']}: '{f}' changed since the run started ({item.get('bytes')} bytes, "
                                f"sha256 {str(item.get('sha256'))[:12]}…; now {st.st_size} bytes); {fix}")


def fingerprint_matches(run_dir: Path, cfg, meta: dict | None) -> bool:
    try:
        verify(run_dir, cfg, meta)
    except (UserError, OSError):
        return False
    return True
