"""What every metric declares: its name, the input it reads, the keys it writes, when it
applies and how it is computed.

Inputs:

* ``samples`` — a ``SampleSet``: particles drawn by a sampler, the particles kept (finite and
  within 100× the data's extent), the data set, the seed, and where they came from a model,
  the model (for metrics against the model's own score);
* ``chains`` — the same ``SampleSet`` with the sampler's bounded trace (MCMC diagnostics);
* ``model`` — a ``ModelView``: a trained experiment and its parameters, evaluated on held-out
  data (``dsm eval``).

A metric returns a dict of finite floats (or lists of them); ``applies`` returns ``None`` when
the metric can be computed for this input, else the reason it cannot (shown when the metric was
asked for by name). ``describe``, where given, returns what the numbers were computed from (a
JSON-ready dict: n, seed, feature network, reference set, ...); ``dsm sample`` stores these under
one key, ``protocol`` (``{metric name: description}``), next to the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

INPUTS = ("samples", "chains", "model")


@dataclass(frozen=True)
class Metric:
    name: str
    input: str
    produces: tuple[str, ...]
    applies: Callable[[Any], str | None]
    compute: Callable[[Any], dict]
    doc: str = ""
    default: bool = True
    describe: Callable[[Any], dict] | None = None
    periodic: bool = True  # also at the trainer's intermediate evaluations (False: costly; last step and dsm eval only)


def protocol(metrics, ctx) -> dict:
    """``{name: metric.describe(ctx)}`` for the metrics that describe what they computed from."""
    return {m.name: m.describe(ctx) for m in metrics if m.describe is not None}


@dataclass
class SampleSet:
    """Particles and what they are compared with."""

    x: Any  # (n, D) all particles, as drawn
    data: Any  # the run's Dataset
    seed: int
    exp: Any = None  # the Experiment that drew them (None: samples from elsewhere)
    params: Any = None
    info: dict = field(default_factory=dict)  # the sampler's diagnostics (trace for chains)
    block: int | None = None  # rows per streamed block (None: each metric's default)
    kept: Any = None  # filled by __post_init__
    escaped_fraction: float = 0.0
    cache: dict = field(default_factory=dict, repr=False)  # shared by the metrics of this sample set

    def __post_init__(self):
        import numpy as np

        x = np.asarray(self.x)
        bound = 100.0 * max(1.0, float(np.abs(self.data.x_test).max()))
        ok = np.isfinite(x).all(1) & (np.abs(np.nan_to_num(x)).max(1) <= bound)
        self.kept = x[ok]
        self.escaped_fraction = float(1 - ok.mean()) if len(x) else 0.0

    @property
    def key(self):
        import jax

        return jax.random.key(self.seed)

    def memo(self, key, compute: Callable[[], Any]):
        """``compute()`` once per sample set (e.g. the image features fd and kid share)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


@dataclass
class ModelView:
    """A trained experiment at one checkpoint."""

    exp: Any
    params: Any
    block: int | None = None  # rows per streamed block (None: train.eval_batch)

    @property
    def data(self):
        return self.exp.data

    def memo(self, key, compute: Callable[[], Any]):
        """``compute()`` once per experiment, for values that do not depend on the parameters
        (the smoothing floors, identical at every evaluation of a run)."""
        if key not in self.exp.cache:
            self.exp.cache[key] = compute()
        return self.exp.cache[key]
