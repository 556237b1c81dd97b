"""Run directories: ``RUNS/<name>/v<NNN>/``, allocated atomically, never overwritten.

Allocation relies on ``mkdir`` being atomic: concurrent trainings race for the next number and
the loser tries the one after. Every file is written atomically (``dsmcli.fsio``), and every
reader here tolerates damaged files: a run whose ``summary.json`` or ``metrics.jsonl`` does not
parse is *reported* as damaged, never a crash of the whole listing. A run's status combines its
``summary.json`` with its write lock (``dsmcli.runlock``): ``running`` only while a live
process holds the lock, ``died`` when the summary says running (or is missing) but nobody holds
it (a training killed with -9, or a crashed machine). This module imports nothing heavy
(``dsm runs``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from dsmcli import fsio, runlock
from dsmcli.errors import UserError, quote

VERSION_RE = re.compile(r"^v(\d{3,})$")
NAME_MAX = 100  # characters of a run or comparison name (a path component is at most 255 bytes)


def runs_root(runs_dir: str | None = None) -> Path:
    return Path(runs_dir or os.environ.get("DSM_RUNS") or "runs")


def _versions(parent: Path) -> list[int]:
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    return sorted(int(m.group(1)) for p in entries if (m := VERSION_RE.match(p.name)))


def check_name(name: str, what: str = "name") -> None:
    if len(name) > NAME_MAX:
        raise UserError(f"{what}: '{quote(name, 40)}' has {len(name)} characters; at most {NAME_MAX} are allowed")


def allocate(root: Path, name: str) -> Path:
    """Create and return the next free ``root/name/vNNN`` (atomic under concurrency)."""
    check_name(name)
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
    """Atomically write ``obj`` as JSON (NaN/inf as null)."""
    fsio.write_json(path, obj)


def write_text(path: Path, text: str) -> None:
    fsio.write_text(path, text)


def read_object(path: Path) -> tuple[dict | None, str | None]:
    """(the JSON object in ``path``, None), (None, None) when the file is absent, or
    (None, what is wrong) when it is damaged."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable ({getattr(e, 'strerror', None) or e})"
    try:
        obj = json.loads(text)
    except ValueError as e:
        return None, f"not valid JSON ({str(e)[:60]})"
    if not isinstance(obj, dict):
        return None, f"holds a JSON {type(obj).__name__}, not an object"
    return obj, None


def read_json(path: Path, default=None):
    """The JSON object in ``path``, or ``default`` when it is absent or damaged."""
    obj, _ = read_object(path)
    return default if obj is None else obj


def is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "meta.json").is_file()


def require_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"RUN_DIR: '{quote(str(path), 120)}' does not exist (pass a run directory such as runs/<name>/v001)")
    if not is_run_dir(p):
        raise UserError(f"RUN_DIR: '{quote(str(path), 120)}' is not a dsm run directory (it has no config.yaml and meta.json)")
    return p


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, each with an integer ``step``.

    A last line without its newline is a write cut short by a crash: readers skip it and a
    resume drops it. Any other line that is not such an object is damage (``scan`` reports it).
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        fsio.append_line(self.path, fsio.dumps(record))

    def scan(self) -> tuple[list[dict], list[str]]:
        """(the valid records, one description per damaged line)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as e:
            return [], [f"unreadable ({getattr(e, 'strerror', None) or e})"]
        lines = text.split("\n")
        torn = lines.pop()  # "" when the file ends with a newline, else a cut-short last write
        records, problems = [], []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                problems.append(f"line {i} is not valid JSON")
                continue
            if not isinstance(rec, dict) or isinstance(rec.get("step"), bool) or not isinstance(rec.get("step"), int):
                problems.append(f"line {i} is not an object with an integer 'step'")
                continue
            records.append(rec)
        del torn
        return records, problems

    def read(self) -> list[dict]:
        return self.scan()[0]

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step`` (resume: no duplicated steps; a torn last
        line is dropped)."""
        kept = [r for r in self.read() if r["step"] <= step]
        write_text(self.path, "".join(fsio.dumps(r) + "\n" for r in kept))


def last_record(path: Path, tail: int = 8192) -> dict | None:
    """The newest complete record of a metrics log, reading only its last ``tail`` bytes."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail))
            chunk = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(chunk.split("\n")[:-1]):  # complete lines only
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            return rec
    return None


def damage(path: Path) -> list[str]:
    """What is damaged in a run directory's own files (empty when nothing is)."""
    problems = []
    for name in ("summary.json", "meta.json"):
        _, problem = read_object(path / name)
        if problem:
            problems.append(f"{name}: {problem}")
    _, bad_lines = MetricsLog(path / "metrics.jsonl").scan()
    if bad_lines:
        more = f" and {len(bad_lines) - 2} more" if len(bad_lines) > 2 else ""
        problems.append(f"metrics.jsonl: {'; '.join(bad_lines[:2])}{more}")
    return problems


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
        "cwd": os.getcwd(),
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
    except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return "?"


# The headline metric of each kind of run, shown by ``dsm runs`` (score models, autoencoders, AutoRec).
KEY_METRICS = ("score_error", "recon_mse", "rmse")


def status(path: Path, summary: dict | None) -> str:
    """``running`` (a live process holds the run's lock), the summary's final status, or
    ``died`` (the summary says running, or there is none, and no process holds the lock)."""
    if runlock.holder(path) is not None:
        return "running"
    recorded = (summary or {}).get("status")
    if recorded in (None, "running"):
        return "died"
    return str(recorded)


def freshest_metrics(summary: dict, evaluation: dict, keys=KEY_METRICS) -> dict:
    """Per key the value of whichever of ``summary.json`` and ``eval.json`` was computed at the
    later step (eval.json on a tie), as ``{key: value, key + "_step": step}``."""
    out = {}
    summary_steps = summary.get("metric_steps") if isinstance(summary.get("metric_steps"), dict) else {}
    for key in keys:
        candidates = []
        if summary.get(key) is not None:
            candidates.append((summary_steps.get(key, summary.get("steps")), 0, summary[key]))
        if evaluation.get(key) is not None:
            candidates.append((evaluation.get("step"), 1, evaluation[key]))
        candidates = [c for c in candidates if isinstance(c[0], int) or c[0] is None]
        if not candidates:
            out[key], out[f"{key}_step"] = None, None
            continue
        step, _, value = max(candidates, key=lambda c: (c[0] if isinstance(c[0], int) else -1, c[1]))
        out[key], out[f"{key}_step"] = value, step
    return out


def list_runs(root: Path) -> list[dict]:
    """One row per run directory under ``root``: name, version, objective, status, steps,
    the freshest key metrics (with the step each belongs to). Damaged runs are listed as
    ``damaged (file: what)``; nothing in one run can stop the listing of the others."""
    rows = []
    try:
        parents = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return rows
    for parent in parents:
        for v in _versions(parent):
            path = parent / f"v{v:03d}"
            if is_run_dir(path):
                rows.append(run_row(path))
            elif any((path / f).exists() for f in ("summary.json", "metrics.jsonl", "checkpoints")):
                missing = [f for f in ("config.yaml", "meta.json") if not (path / f).is_file()]
                rows.append({"name": parent.name, "version": path.name, "objective": "?", "steps": None, "loss": None,
                             "status": f"damaged ({', '.join(missing)}: missing)", "path": str(path),
                             **{k: None for key in KEY_METRICS for k in (key, f"{key}_step")}})
    return rows


def run_row(path: Path) -> dict:
    summary, problem = read_object(path / "summary.json")
    evaluation = read_json(path / "eval.json", {})
    problems = [f"summary.json: {problem}"] if problem else []
    summary = summary or {}
    state = "damaged (" + "; ".join(problems) + ")" if problems else status(path, summary)
    objective = summary.get("objective") if isinstance(summary.get("objective"), str) else None
    steps = summary.get("steps") if isinstance(summary.get("steps"), int) else None
    loss = summary.get("loss") if isinstance(summary.get("loss"), (int, float)) else None
    if state in ("running", "died"):  # the summary is written at the start and the end: read progress off the log
        newest = last_record(path / "metrics.jsonl")
        if newest is not None:
            steps = newest["step"]
            loss = newest.get("loss") if isinstance(newest.get("loss"), (int, float)) else loss
    return {
        "name": path.parent.name,
        "version": path.name,
        "objective": objective or _objective_from_config(path),
        "status": state,
        "steps": steps,
        "loss": loss,
        **freshest_metrics(summary, evaluation),
        "path": str(path),
    }
