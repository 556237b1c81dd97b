"""Run directories: ``RUNS/<name>/v<NNN>/``, allocated atomically, never overwritten.

Allocation relies on ``mkdir`` being atomic: concurrent trainings race for the next number and
the loser tries the one after. JSON files are written to a temporary file and renamed into
place, so a reader never sees half a file. This module imports nothing heavy (``dsm runs``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from dsmcli.errors import UserError

VERSION_RE = re.compile(r"^v(\d{3,})$")


def runs_root(runs_dir: str | None = None) -> Path:
    return Path(runs_dir or os.environ.get("DSM_RUNS") or "runs")


def _versions(parent: Path) -> list[int]:
    if not parent.is_dir():
        return []
    return sorted(int(m.group(1)) for p in parent.iterdir() if (m := VERSION_RE.match(p.name)))


def allocate(root: Path, name: str) -> Path:
    """Create and return the next free ``root/name/vNNN`` (atomic under concurrency)."""
    parent = root / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--runs-dir: cannot create '{parent}': {e.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"--runs-dir: '{parent}' is not writable")
    version = (_versions(parent) or [0])[-1] + 1
    while True:
        path = parent / f"v{version:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            version += 1
        except OSError as e:
            raise UserError(f"--runs-dir: cannot create '{path}': {e.strerror}") from None


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as JSON (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "meta.json").is_file()


def require_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"RUN_DIR: '{path}' does not exist (pass a run directory such as runs/<name>/v001)")
    if not is_run_dir(p):
        raise UserError(f"RUN_DIR: '{path}' is not a dsm run directory (it has no config.yaml and meta.json)")
    return p


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, each with ``step``."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a crash
        return out

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (resume: no duplicated steps)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def meta(argv: list[str] | None = None) -> dict:
    import flax
    import jax
    import optax

    from dsmcli import __version__

    return {
        "dsm": __version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": sys.version.split()[0],
        "devices": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "argv": list(argv if argv is not None else sys.argv),
        "git_commit": git_commit(),
        "host": os.uname().nodename,
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def latest(root: Path, name: str) -> Path | None:
    versions = _versions(root / name)
    return root / name / f"v{versions[-1]:03d}" if versions else None


def _objective_from_config(path: Path) -> str:
    """Fallback for runs without a summary yet (parsing YAML is the slow part of ``dsm runs``)."""
    import yaml

    try:
        cfg = yaml.safe_load((path / "config.yaml").read_text()) or {}
        return str(cfg.get("objective", {}).get("kind", "?"))
    except (OSError, yaml.YAMLError, AttributeError):
        return "?"


# The headline metric of each kind of run, shown by ``dsm runs`` (score models, autoencoders, AutoRec).
KEY_METRICS = ("score_error", "recon_mse", "rmse")


def list_runs(root: Path) -> list[dict]:
    """One row per run directory under ``root``: name, version, objective, status, steps, metrics."""
    rows = []
    if not root.is_dir():
        return rows
    for parent in sorted(p for p in root.iterdir() if p.is_dir()):
        for v in _versions(parent):
            path = parent / f"v{v:03d}"
            if not is_run_dir(path):
                continue
            summary = read_json(path / "summary.json", {}) or {}
            evaluation = read_json(path / "eval.json", {}) or {}
            objective = summary.get("objective") or _objective_from_config(path)
            rows.append(
                {
                    "name": parent.name,
                    "version": f"v{v:03d}",
                    "objective": objective,
                    "status": summary.get("status", "?"),
                    "steps": summary.get("steps"),
                    "loss": summary.get("loss"),
                    **{k: evaluation.get(k, summary.get(k)) for k in KEY_METRICS},
                    "path": str(path),
                }
            )
    return rows
