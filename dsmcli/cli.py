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
    rich_markup_mode=None,  # plain help: flags as flags, values as their metavar
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Score matching and the autoencoders that learn scores: train, sample, evaluate, compare.",
)

Overrides = Annotated[Optional[list[str]], typer.Argument(metavar="KEY=VALUE", show_default=False,
                                                          help="Overrides: dotted keys, YAML values.")]
RunsDir = Annotated[Optional[str], typer.Option("--runs-dir", metavar="DIR", help="Output root (default: $DSM_RUNS, else ./runs).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no notes (errors still print).")]
Metrics = Annotated[Optional[str], typer.Option("--metrics", metavar="A,B,...",
                                                help="Compute only these metrics (default: every one that applies).")]


def _version(value: bool) -> None:
    if value:
        from dsmcli import __version__

        typer.echo(f"dsm {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Score matching and the autoencoders that learn scores: train, sample, evaluate, compare."""


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
    from dsmcli.tables import fmt, print_pairs, print_records

    if vertical if vertical is not None else len(rows) == 1:  # one record reads best as name/value pairs
        print_pairs(rows[0], columns, title=title)
    else:
        print_records([[fmt(r.get(c)) for c in columns] for r in rows], columns, title=title, keys=2)


def _fmt(v) -> str:
    from dsmcli.tables import fmt

    return fmt(v)


@app.command()
@_handled
def train(
    overrides: Overrides = None,
    config: Annotated[Optional[str], typer.Option("--config", "-c", metavar="PATH", help="Experiment YAML.")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", metavar="RUN_DIR", help="Continue RUN_DIR from its newest checkpoint.")] = None,
    runs_dir: RunsDir = None,
    name: Annotated[Optional[str], typer.Option("--name", metavar="NAME", help="Run name (default: config name, else the file's stem).")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
    quiet: Quiet = False,
):
    """Train a new run (--config) or continue one (--resume).

    Prints the run directory on the last line."""
    from dsmcli import api, console
    from dsmcli.errors import UserError

    console.set_quiet(quiet)

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
    keys = ["status", "steps", "loss", "loss_excess", "score_error", "rmse", "rmse_baseline", "steps_per_sec", "compile_s", "wall_s"]
    _table([summary], [k for k in keys if k in summary])
    typer.echo(str(run_dir))


@app.command()
@_handled
def sample(
    run_dir: Annotated[str, typer.Argument(metavar="RUN_DIR", help="A run directory.")],
    overrides: Overrides = None,
    sampler: Annotated[Optional[str], typer.Option("--sampler", metavar="NAME", help="Sampler kind (default: the run's sample.kind).")] = None,
    n: Annotated[Optional[int], typer.Option("--n", metavar="N", help="Number of particles.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", metavar="S", help="Sampling seed (default: the run's seed).")] = None,
    metrics: Metrics = None,
    quiet: Quiet = False,
):
    """Sample from a run's newest checkpoint.

    Writes samples/<sampler>-<n>-s<seed>.npz and its plot; prints the .npz path last."""
    from dsmcli import api, console

    console.set_quiet(quiet)

    from dsmcli.metrics import parse_names

    path, record = api.sample(run_dir, sampler=sampler, n=n, seed=seed, overrides=overrides, metrics=parse_names(metrics))
    shown = {k: v for k, v in record.items() if k not in ("file", "protocol")}  # protocol: in samples/metrics.jsonl
    _table([shown], list(shown))
    typer.echo(str(path))


@app.command("eval")
@_handled
def evaluate(run_dir: Annotated[str, typer.Argument(metavar="RUN_DIR", help="A run directory.")],
             overrides: Annotated[Optional[list[str]], typer.Argument(metavar="[eval.KEY=VALUE]...", show_default=False,
                                                                      help="Evaluation settings, e.g. eval.nll_n=500.")] = None,
             metrics: Metrics = None, quiet: Quiet = False):
    """Evaluate a run's newest checkpoint.

    Writes eval.json and plots/, prints the metrics."""
    from dsmcli import api, console

    console.set_quiet(quiet)

    from dsmcli.metrics import parse_names

    path, result = api.evaluate(run_dir, metrics=parse_names(metrics), overrides=overrides)
    _table([result], list(result))
    typer.echo(str(path))


@app.command()
@_handled
def compare(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="RUN_DIR|KEY=VALUE", show_default=False,
                                                        help="Existing run directories, or with --config overrides "
                                                             "(compare keys such as seeds=[0,1], else keys of the base experiment).")] = None,
    config: Annotated[Optional[str], typer.Option("--config", "-c", metavar="PATH",
                                                  help="A compare YAML (base, seeds, variants), or an experiment YAML to sweep.")] = None,
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", metavar="KEY=V1,V2,...",
                                                       help="Variants: the product of every --sweep's values.")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", metavar="S1,S2,...", help="Seeds of every variant.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N", min=1, help="Runs trained and evaluated at once (worker processes).")] = 1,
    launcher: Annotated[str, typer.Option("--launcher", metavar="local|ray", help="Where the runs go: local worker processes, or Ray tasks.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one).")] = None,
    runs_dir: RunsDir = None,
    quiet: Quiet = False,
):
    """Compare variants × seeds side by side.

    Trains (or reuses) one run per variant and seed, samples and evaluates each, and writes
    comparison.json, comparison.md and figures; prints the comparison directory last."""
    from dsmcli import compare as comparison
    from dsmcli import console

    console.set_quiet(quiet)
    out_dir, table = comparison.run(config, args or [], runs_dir=runs_dir, sweeps=sweep or [], seeds=seeds,
                                    jobs=jobs, launcher=launcher, ray_address=ray_address)
    typer.echo(str(out_dir))
    if any(row.get("status") == "failed" for row in table):
        raise typer.Exit(1)


@app.command("runs")
@_handled
def list_runs(
    runs_dir: RunsDir = None,
    latest: Annotated[Optional[str], typer.Option("--latest", metavar="NAME", help="Print only the newest run directory of NAME.")] = None,
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
    from dsmcli.jaxsetup import configure_xla_env

    configure_xla_env()  # before anything imports JAX
    app()


if __name__ == "__main__":
    main()
