"""``dsm``: thin Typer commands over ``dsmcli.api``.

Exit codes: 0 success, 2 user error (one message, no traceback), 1 internal failure or
divergence, 128 + signal number when training was interrupted. JAX is imported only by the
commands that compute, so ``dsm --help`` and ``dsm runs`` stay instant.
"""

from __future__ import annotations

import errno
import functools
import sys
from typing import Annotated, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,  # an internal error (exit 1) prints a plain traceback
    help="Score matching and the autoencoders that learn scores: train, sample, evaluate, compare.",
)

Overrides = Annotated[Optional[list[str]], typer.Argument(help="KEY=VALUE overrides (dotted keys, YAML values).", show_default=False)]
RunsDir = Annotated[Optional[str], typer.Option("--runs-dir", help="Output root (default: $DSM_RUNS, else ./runs).")]


# File-system errors the user can fix (space, permissions, a file where a directory belongs).
USER_FS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EPERM,
                  errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def _err(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _handled(fn):
    """Map the project's exceptions to exit codes and messages without tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from dsmcli.errors import TrainingDiverged, TrainingInterrupted, UserError

        try:
            return fn(*args, **kwargs)
        except UserError as e:
            _err(str(e))
            raise typer.Exit(2) from None
        except TrainingDiverged as e:
            _err(str(e))
            raise typer.Exit(1) from None
        except TrainingInterrupted as e:
            _err(str(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:  # outside training (which stops cleanly by itself): files are whole or absent
            _err("interrupted; nothing was left half-written")
            raise typer.Exit(130) from None
        except OSError as e:
            if e.errno not in USER_FS_ERRORS:
                raise
            where = f"'{e.filename}'" if e.filename else "a file"
            _err(f"cannot write {where}: {e.strerror} (check the free space and permissions there; every file "
                 f"is written whole or not at all, so what was written before is unchanged)")
            raise typer.Exit(2) from None
        except MemoryError:
            _err("out of memory (a size in the config is too large for this machine: lower data.n_train, "
                 "train.batch_size, sample.n or the network size)")
            raise typer.Exit(2) from None
        except Exception as e:
            if "RESOURCE_EXHAUSTED" not in str(e)[:2000]:
                raise
            _err(f"the device ran out of memory ({str(e).splitlines()[0][:200]}); lower train.batch_size, "
                 f"sample.batch or the network size")
            raise typer.Exit(2) from None

    return wrapper


def _table(rows: list[dict], columns: list[str], title: str | None = None, vertical: bool | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold", title_justify="left")
    if vertical if vertical is not None else len(rows) == 1:  # one record reads best as name/value pairs
        table.add_column("metric")
        table.add_column("value", justify="right")
        for c in columns:
            table.add_row(c, _fmt(rows[0].get(c)))
    else:
        for c in columns:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(_fmt(r.get(c)) for c in columns))
    Console(width=max(100, Console().width)).print(table)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


@app.command()
@_handled
def train(
    overrides: Overrides = None,
    config: Annotated[Optional[str], typer.Option("--config", "-c", help="Experiment YAML.")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Continue RUN_DIR from its newest checkpoint.")] = None,
    runs_dir: RunsDir = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (default: config name, else the file's stem).")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
):
    """Train a new run (--config) or continue one (--resume); prints the run directory last."""
    from dsmcli import api
    from dsmcli.errors import UserError

    if (config is None) == (resume is None):
        raise UserError("train: give exactly one of --config PATH (a new run) or --resume RUN_DIR")
    if resume is not None:
        if print_config or name:
            raise UserError("train --resume: --print-config and --name apply to new runs only")
        run_dir, summary = api.resume(resume, overrides, argv=sys.argv)
    else:
        if print_config:
            typer.echo(api.config_yaml(api.resolve_train_config(config, overrides, name)), nl=False)
            return
        run_dir, summary = api.train(config, overrides, runs_dir=runs_dir, name=name, argv=sys.argv)
    keys = ["status", "steps", "loss", "score_error", "rmse", "rmse_baseline", "steps_per_sec", "compile_s", "wall_s"]
    _table([summary], [k for k in keys if k in summary])
    typer.echo(str(run_dir))


@app.command()
@_handled
def sample(
    run_dir: Annotated[str, typer.Argument(help="A run directory.")],
    overrides: Overrides = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", help="Sampler kind (default: the run's sample.kind).")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Number of particles.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (default: the run's seed).")] = None,
):
    """Sample from a run's newest checkpoint; prints the .npz path last."""
    from dsmcli import api

    path, record = api.sample(run_dir, sampler=sampler, n=n, seed=seed, overrides=overrides)
    shown = {k: v for k, v in record.items() if k not in ("file",)}
    _table([shown], list(shown))
    typer.echo(str(path))


@app.command("eval")
@_handled
def evaluate(run_dir: Annotated[str, typer.Argument(help="A run directory.")]):
    """Evaluate a run's newest checkpoint: writes eval.json and plots, prints a table."""
    from dsmcli import api

    path, result = api.evaluate(run_dir)
    _table([result], list(result), title=str(run_dir))
    typer.echo(str(path))


@app.command()
@_handled
def compare(
    run_dirs: Annotated[Optional[list[str]], typer.Argument(help="Existing run directories, or KEY=VALUE overrides with --config.")] = None,
    config: Annotated[Optional[str], typer.Option("--config", "-c", help="Compare YAML (base, seeds, variants).")] = None,
    runs_dir: RunsDir = None,
):
    """Train/reuse, sample and evaluate variants × seeds, and tabulate them side by side."""
    from dsmcli import compare as comparison

    out_dir, table = comparison.run(config, run_dirs or [], runs_dir=runs_dir)
    typer.echo(str(out_dir))
    if any(row.get("status") == "failed" for row in table):
        raise typer.Exit(1)


@app.command("runs")
@_handled
def list_runs(
    runs_dir: RunsDir = None,
    latest: Annotated[Optional[str], typer.Option("--latest", help="Print only the newest run directory of NAME.")] = None,
):
    """List runs: name, version, objective, status, steps, key metrics."""
    from dsmcli import runs
    from dsmcli.errors import UserError

    root = runs.runs_root(runs_dir)
    if latest is not None:
        path = runs.latest(root, latest)
        if path is None:
            raise UserError(f"--latest: no runs named '{latest}' under '{root}'")
        typer.echo(str(path))
        return
    rows = runs.list_runs(root)
    if not rows:
        typer.echo(f"no runs under {root}")
        return
    shown = [k for k in runs.KEY_METRICS if k == "score_error" or any(r.get(k) is not None for r in rows)]
    for r in rows:  # a metric older than the run's newest step says which step it is from
        for k in shown:
            at = r.get(f"{k}_step")
            if r.get(k) is not None and at is not None and r.get("steps") is not None and at != r["steps"]:
                r[k] = f"{_fmt(r[k])} @{at}"
    _table(rows, ["name", "version", "objective", "status", "steps", "loss", *shown], title=str(root), vertical=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
