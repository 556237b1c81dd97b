"""Progress a person can watch, wherever dsm runs.

* On a terminal (stderr is a TTY): a rich progress bar per task (training steps, sampling
  batches, evaluation stages, the runs of a compare as ``[k/n]``).
* Off a terminal (a log file, CI, ``nohup``): one plain line on stderr per update, e.g.::

      train step 500/5000 loss 99.43 2301 steps/s ETA 2s
      compare [3/24] objectives_gmm-dsm seed 1: trained in 2.1 s -> runs/objectives_gmm-dsm/v003

  (training updates once per ``log_every`` dispatch; compare once per stage; sampling also
  within a dispatch, from the sampler's loop: ``scan``, at most once a second off a
  terminal).
* With ``--quiet`` (``console.set_quiet``): nothing. Inside another bar (the runs a compare
  trains in its own process) a bar is silent: the outer one reports the stages.

Everything goes to stderr, so the last line of stdout stays the path a command produced.
"""

from __future__ import annotations

import sys
import time

from dsmcli import console


_depth = 0  # bars open around this one: only the outermost shows (a compare, not each of its runs)
_loop_listener = None  # set by ``within_dispatch``: called with the fraction of the running dispatch done


def _mode() -> str:
    if console.quiet() or _depth > 0:
        return "quiet"
    return "rich" if sys.stderr.isatty() else "plain"


def _eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Bar:
    """A task with ``total`` units done in updates: ``update(done, **fields)``, ``note(text)``.
    ``fields`` are shown as ``name value`` (``loss 99.43``); ``rate`` is units per second."""

    def __init__(self, what: str, total: int, *, unit: str = "step", done: int = 0):
        self.what, self.total, self.unit, self.done = what, int(total), unit, int(done)
        self.mode = _mode()
        self._start, self._start_done = time.perf_counter(), self.done
        self._rich = None
        if self.mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._rich = Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=False)
            self._task = self._rich.add_task(what, total=max(self.total, 1), completed=self.done, info="")

    def __enter__(self):
        global _depth
        _depth += 1
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc):
        global _depth
        _depth -= 1
        if self._rich is not None:
            self._rich.stop()
        return False

    def eta(self) -> float | None:
        elapsed = time.perf_counter() - self._start
        progressed = self.done - self._start_done
        if progressed <= 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / progressed

    def update(self, done: int, **fields) -> None:
        self.done = int(done)
        info = " ".join(f"{k} {_fmt(v)}" for k, v in fields.items() if v is not None)
        if self.mode == "rich":
            self._rich.update(self._task, completed=self.done, info=info)
        elif self.mode == "plain":
            print(f"{self.what} {self.unit} {self.done}/{self.total}" + (f" {info}" if info else "") +
                  f" ETA {_eta(self.eta())}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A line about one stage (printed above a rich bar)."""
        if self.mode == "rich":
            self._rich.console.print(text, markup=False, highlight=False)
        elif self.mode == "plain":
            print(text, file=sys.stderr, flush=True)


def scan(f, init, xs, pieces: int = 25, *, before: int = 0, total: int | None = None):
    """``jax.lax.scan(f, init, xs)`` run as an outer scan over ≤ ``pieces`` inner scans of equal
    length (the smallest divisor of the length that makes ≤ ``pieces`` of them: one loop body,
    compiled once), telling the dispatch's listener (``within_dispatch``) after each piece how
    much of the dispatch is done: (``before`` + the steps done) / ``total`` (default: this loop
    is the whole dispatch). ys come out stacked as ``lax.scan`` stacks them.

    The same steps on the same inputs in the same order: the same bits (tested). The report is a
    host callback with no outputs (``jax.debug.callback``) fed one number of the carry, so
    that it runs after its piece; without a listener it does nothing. Each costs 0.3–0.7 ms on
    this VM, hence pieces rather than a ``lax.cond`` and a callback in every step, which cost a
    small sampler 10–20 % of its time (``benchmarks/ab_progress.py``)."""
    import jax
    import jax.numpy as jnp

    n = jax.tree.leaves(xs)[0].shape[0]
    every = next((d for d in range(max(1, -(-n // pieces)), n) if n % d == 0), n)
    if every >= n:  # one piece (or none): nothing to report before the dispatch's end
        return jax.lax.scan(f, init, xs)
    total = n + before if total is None else total

    def report(i, _):
        if _loop_listener is not None:
            _loop_listener(min((before + (int(i) + 1) * every) / total, 1.0))

    def piece(carry, inputs):
        i, xs_piece = inputs
        carry, ys = jax.lax.scan(f, carry, xs_piece)
        numbers = [a for a in jax.tree.leaves(carry) if jnp.issubdtype(a.dtype, jnp.number) and a.size]
        jax.debug.callback(report, i, jnp.ravel(numbers[0])[0] if numbers else i)
        return carry, ys

    shaped = jax.tree.map(lambda a: a.reshape(n // every, every, *a.shape[1:]), xs)
    carry, ys = jax.lax.scan(piece, init, (jnp.arange(n // every), shaped))
    return carry, jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), ys)


class within_dispatch:
    """While one dispatch of ``units`` units (after ``done`` finished ones) runs: ``scan`` moves
    ``bar`` on within it — every report on a terminal, at most once per ``PLAIN_EVERY_S``
    seconds off one (a log keeps one line per interval)."""

    PLAIN_EVERY_S = 1.0

    def __init__(self, bar: Bar, done: int, units: int):
        self.bar, self.done, self.units = bar, done, units
        self._last = time.perf_counter()

    def _listen(self, fraction: float) -> None:
        if fraction >= 1.0:  # the caller reports the dispatch's end (with its results)
            return
        now = time.perf_counter()
        if self.bar.mode == "plain" and now - self._last < self.PLAIN_EVERY_S:
            return
        self._last = now
        self.bar.update(self.done + int(self.units * fraction))

    def __enter__(self):
        global _loop_listener
        _loop_listener = self._listen
        return self

    def __exit__(self, *exc):
        global _loop_listener
        _loop_listener = None
        return False


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "nan"
    return str(v)
