"""Experiment tracking: TensorBoard event files and MLflow runs, from the ``track`` section.

```yaml
track: {tensorboard: true, mlflow: true}     # mlflow: true | a tracking URI | null
```

* ``tensorboard: true`` writes event files into ``RUN/tensorboard/`` (``tensorboardX``): every
  numeric field of every ``metrics.jsonl`` record as a scalar at its step (``train/loss``,
  ``train/score_error``, …), and ``dsm eval``'s metrics as ``eval/…``. ``tensorboard --logdir
  runs`` shows every run's curves. A resume purges the events after its checkpoint's step, as it
  does the log's lines.
* ``mlflow: URI`` logs to an MLflow tracking server or store (``MlflowClient``, no global
  state): one MLflow run per dsm run (experiment = the run's name, MLflow run name
  ``name/vNNN``), the flattened config as params, the same metrics with their steps, the final
  status, and ``config.yaml``, ``summary.json`` and ``metrics.jsonl`` as artefacts (``dsm eval``
  adds its metrics and plots). ``mlflow: true`` is a local SQLite store next to the runs:
  ``sqlite:///RUNS/mlflow.db``, artefacts in ``RUNS/mlartifacts/``. The MLflow run id is kept
  in ``RUN/tracking.json`` so that a resume and ``dsm eval`` log into the same MLflow run.

Both are the optional extra ``dsm[tracking]`` and are imported only when configured; a config
that asks for one that is not installed is refused before the run starts. A tracker that fails
during training (a server that goes away) is reported once and switched off: tracking never
stops a training.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from pydantic import Field

from dsmcli import console
from dsmcli.errors import UserError
from dsmcli.section import Section

EXTRA = "pip install 'dsm[tracking]'"


class TrackConfig(Section):
    tensorboard: bool = False
    mlflow: bool | str | None = Field(None, description="true (a SQLite store next to the runs) or a tracking URI")


def _require(module: str, key: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"track.{key}: needs {module}, which is not installed ({EXTRA})") from None


def check_available(track: TrackConfig) -> None:
    """Refuse, before a run starts, a tracker whose library is missing."""
    if track.tensorboard:
        _require("tensorboardX", "tensorboard")
    if track.mlflow:
        _require("mlflow", "mlflow")


def mlflow_uri(track: TrackConfig, run_dir: Path) -> tuple[str, str | None]:
    """(tracking URI, artefact root or None) for ``track.mlflow``."""
    if track.mlflow is True:
        root = Path(run_dir).resolve().parents[1]
        return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()
    return str(track.mlflow), None


def _scalars(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


@contextmanager
def _store_lock(uri: str):
    """Serialise the processes of a sweep on a local SQLite store: MLflow creates its schema on
    first use, and two processes doing so at once collide ("duplicate column name")."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl
    import os

    path = Path(uri[len("sqlite:///"):]).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _writer(tbx, run_dir: Path, purge_step: int | None):
    """An event file of its own: tensorboardX names files by the second and the host, so two
    writers of one second (an eval right after its training) would write the same file. The
    suffix starts with the time in nanoseconds: readers take a directory's files in name order,
    so a resume's file must sort after the first training's, also within one second."""
    import os
    import time
    import uuid

    return tbx.SummaryWriter(logdir=str(run_dir / "tensorboard"), purge_step=purge_step, flush_secs=10,
                             filename_suffix=f".{time.time_ns():020d}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


class Tracker:
    """The configured trackers of one run (a no-op when none is configured)."""

    def __init__(self, cfg, run_dir: Path, *, resume_step: int | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        track = getattr(cfg, "track", None) or TrackConfig()
        self.tb = self.client = self.run_id = None
        if track.tensorboard:
            tbx = _require("tensorboardX", "tensorboard")
            # a resume drops the events logged after its checkpoint (as it drops the log's lines)
            purge = None if resume_step is None else resume_step + 1
            self.tb = _writer(tbx, self.run_dir, purge)
            if resume_step is None:
                self.tb.add_text("config", "```\n" + (self.run_dir / "config.yaml").read_text() + "\n```", 0)
        if track.mlflow:
            self._start_mlflow(track, resume_step)

    # -------------------------------------------------------------- MLflow
    def _start_mlflow(self, track: TrackConfig, resume_step: int | None) -> None:
        from dsmcli import runs

        import logging

        _require("mlflow", "mlflow")
        for name in ("mlflow", "alembic"):  # their INFO lines (database set-up) are noise here
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri, artifacts = mlflow_uri(track, self.run_dir)
        self.uri = uri
        saved = runs.read_json(self.run_dir / "tracking.json", {})
        try:
            with _store_lock(uri):
                self._create_mlflow_run(MlflowClient, Param, uri, artifacts, saved)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"track.mlflow: cannot log to '{uri}': {type(e).__name__}: {str(e)[:300]}") from None
        runs.write_json(self.run_dir / "tracking.json", {"tracking_uri": uri, "mlflow_run_id": self.run_id})

    def _create_mlflow_run(self, MlflowClient, Param, uri, artifacts, saved) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        if saved.get("mlflow_run_id") and saved.get("tracking_uri") == uri:
            self.run_id = saved["mlflow_run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = self.cfg.name
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(name, artifact_location=artifacts)
        run = self.client.create_run(exp_id, run_name=f"{name}/{self.run_dir.name}",
                                     tags={"dsm.run_dir": str(self.run_dir.resolve()),
                                           "dsm.objective": self.cfg.objective.kind})
        self.run_id = run.info.run_id
        from dsmcli.config import flatten

        params = [Param(k, str(v)[:500]) for k, v in flatten(self.cfg.to_dict()).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def _guard(self, what: str, fn) -> None:
        try:
            if what.startswith("MLflow"):
                with _store_lock(getattr(self, "uri", "")):
                    fn()
            else:
                fn()
        except Exception as e:  # never let tracking stop a training
            console.warn(f"{what} failed ({type(e).__name__}: {str(e)[:200]}); it is switched off for this run")
            if what.startswith("TensorBoard"):
                self.tb = None
            else:
                self.client = None

    # -------------------------------------------------------------- events
    def log(self, record: dict, prefix: str = "train") -> None:
        values, step = _scalars(record), int(record.get("step", 0))
        if self.tb is not None:
            self._guard("TensorBoard logging", lambda: [self.tb.add_scalar(f"{prefix}/{k}", v, step) for k, v in values.items()])
        if self.client is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(f"{prefix}.{k}" if prefix != "train" else k, v, now, step) for k, v in values.items()]
            self._guard("MLflow logging", lambda: self.client.log_batch(self.run_id, metrics=metrics))

    def artifacts(self, paths: list[Path], where: str | None = None) -> None:
        if self.client is not None:
            for path in paths:
                if Path(path).is_file():
                    self._guard("MLflow artefact upload", lambda p=path: self.client.log_artifact(self.run_id, str(p), where))

    def finish(self, status: str) -> None:
        if self.tb is not None:
            self._guard("TensorBoard flush", self.tb.close)
        if self.client is not None:
            self.artifacts([self.run_dir / n for n in ("config.yaml", "summary.json", "metrics.jsonl")])
            state = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}.get(status, "FINISHED")
            self._guard("MLflow status", lambda: self.client.set_terminated(self.run_id, status=state))


def log_evaluation(cfg, run_dir: Path, result: dict, plots: list[Path]) -> None:
    """``dsm eval``'s metrics (and plots) into the run's trackers, where it has any."""
    track = getattr(cfg, "track", None)
    if track is None or not (track.tensorboard or track.mlflow):
        return
    try:
        check_available(track)
    except UserError as e:
        console.warn(f"{e}; the evaluation is not tracked")
        return
    tracker = Tracker.__new__(Tracker)
    tracker.cfg, tracker.run_dir, tracker.tb, tracker.client, tracker.run_id = cfg, Path(run_dir), None, None, None
    if track.tensorboard:
        import tensorboardX

        tracker.tb = _writer(tensorboardX, Path(run_dir), None)
    if track.mlflow:
        from dsmcli import runs

        saved = runs.read_json(Path(run_dir) / "tracking.json", {})
        if saved.get("mlflow_run_id"):
            from mlflow.tracking import MlflowClient

            tracker.client, tracker.run_id = MlflowClient(tracking_uri=saved["tracking_uri"]), saved["mlflow_run_id"]
            tracker.uri = saved["tracking_uri"]
    tracker.log(result, prefix="eval")
    tracker.artifacts([Path(run_dir) / "eval.json", *plots], where="eval")
    if tracker.tb is not None:
        tracker.tb.close()
