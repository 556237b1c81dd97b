"""``ratings``: a user × item rating matrix with most entries unobserved, for recommendation
(AutoRec, Sedhain et al. 2015). Item-based: **rows are items, columns are users**.

Source, one of:

* ``path``: a local MovieLens ``u.data``-layout text file (ml-100k ships one; never downloaded),
  one rating per line::

      user  item  rating  [timestamp]

  separated by any whitespace (``u.data`` uses tabs); ``user`` and ``item`` are 1-based
  integer ids, ``rating`` a finite number, the optional ``timestamp`` is ignored. Blank lines
  are skipped. The matrix is ``(max item id, max user id)``; ids that never occur give
  all-missing rows/columns. A (user, item) pair rated twice is an error.
* no ``path``: a synthetic low-rank matrix. Users and items get latent factors
  ``U (n_users, rank)``, ``V (n_items, rank)`` ~ N(0, 1); the score of (item i, user u) is
  ``⟨Vᵢ, Uᵤ⟩/√rank + noise·ε``; exactly ``round(density · n_items · n_users)`` entries are
  observed (a seeded choice without replacement), and observed scores are mapped to the
  integers 1…5 by their quantiles at MovieLens-100k's rating frequencies (6, 11, 27, 34, 21 %).

Split: ``round(test_fraction · #observed)`` observed (item, user) entries, a seeded random
choice, are held out. ``x_train`` (n_items, n_users) float32 holds the other ratings and NaN
everywhere else; ``x_test`` (same shape) holds only the held-out ratings, NaN elsewhere; the two
are disjoint and together hold every observed rating. ``has_missing`` is set, so only objectives
that mask NaN (``autorec``) train on it. A bad file (missing, unreadable, a line with the wrong
number of columns, a non-numeric field or id, a non-positive id, a non-finite rating, a repeated
pair) is a ``UserError`` that names the file and line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from dsmcli.data.base import Dataset
from dsmcli.errors import UserError
from dsmcli.section import FilePath, Section

MAX_ENTRIES = 200_000_000  # the matrix is dense (two float32 copies): ~1.6 GB at this size

# MovieLens-100k's fractions of ratings 1…5, used to map synthetic scores to stars.
STAR_FREQUENCIES = (0.0611, 0.1137, 0.2715, 0.3417, 0.2120)


class Config(Section):
    kind: Literal["ratings"] = "ratings"
    path: FilePath | None = None  # a u.data-layout file; when absent, the synthetic generator below
    n_users: PositiveInt = 943  # the synthetic defaults have MovieLens-100k's shape and density
    n_items: PositiveInt = 1682
    rank: PositiveInt = 5
    density: float = Field(0.063, gt=0.0, le=1.0)  # fraction of the matrix observed
    noise: float = Field(0.5, ge=0.0)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    seed: NonNegativeInt = 0  # seeds the synthetic matrix and the split, not the experiment


def read_ratings(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, users, ratings) of a ``u.data``-layout file, ids 0-based, with errors that name
    the file and the line."""
    from dsmcli.fsio import regular_file_problem

    p = Path(path)
    where = f"data.path: '{path}'"
    problem = regular_file_problem(p)
    if problem:
        raise UserError(f"{where} {problem} (data.kind ratings reads a local MovieLens u.data-layout file)")
    items, users, values = [], [], []
    seen: dict[tuple[int, int], int] = {}
    try:
        with open(p, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                fields = raw.split()
                if not fields:
                    continue
                at = f"{where}, line {lineno}"
                if len(fields) not in (3, 4):
                    raise UserError(f"{at}: expected 4 whitespace-separated columns (user item rating timestamp; "
                                    f"the timestamp may be left out), got {len(fields)}")
                try:
                    user, item = int(fields[0]), int(fields[1])
                except ValueError:
                    raise UserError(f"{at}: user and item must be integer ids, got "
                                    f"{_show(fields[0])} and {_show(fields[1])}") from None
                if user < 1 or item < 1:
                    raise UserError(f"{at}: ids are 1-based, got user {user} and item {item}")
                try:
                    rating = float(fields[2])
                except ValueError:
                    raise UserError(f"{at}: rating must be a number, got {_show(fields[2])}") from None
                if not math.isfinite(rating):
                    raise UserError(f"{at}: rating must be finite, got {_show(fields[2])}")
                first = seen.setdefault((user, item), lineno)
                if first != lineno:
                    raise UserError(f"{at}: user {user} rated item {item} again (first on line {first})")
                users.append(user - 1)
                items.append(item - 1)
                values.append(rating)
    except OSError as e:
        raise UserError(f"{where} cannot be read: {e.strerror or e}") from None
    if len(values) < 2:
        raise UserError(f"{where} has {len(values)} rating line(s); need at least 2 to split into train and test")
    return np.asarray(items, np.int64), np.asarray(users, np.int64), np.asarray(values, np.float32)


def _show(field: bytes) -> str:
    return repr(field.decode("utf-8", "replace"))


def synthetic(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, users, ratings in 1…5) of the low-rank generator (see the module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    n_obs = int(round(cfg.density * cfg.n_items * cfg.n_users))
    if n_obs < 2:
        raise UserError(f"data.density: {cfg.density} of {cfg.n_items}×{cfg.n_users} observes {n_obs} entries; "
                        f"need at least 2 (raise data.density, data.n_items or data.n_users)")
    u = rng.standard_normal((cfg.n_users, cfg.rank))
    v = rng.standard_normal((cfg.n_items, cfg.rank))
    flat = rng.choice(cfg.n_items * cfg.n_users, size=n_obs, replace=False)
    items, users = np.divmod(flat, cfg.n_users)
    scores = np.einsum("nk,nk->n", v[items], u[users]) / np.sqrt(cfg.rank)
    scores += cfg.noise * rng.standard_normal(n_obs)
    cuts = np.quantile(scores, np.cumsum(STAR_FREQUENCIES)[:-1])
    stars = 1 + np.searchsorted(cuts, scores, side="right")
    return items.astype(np.int64), users.astype(np.int64), stars.astype(np.float32)


NBYTES_FIX = "use a smaller ratings file, or lower data.n_items / data.n_users"


def nbytes(cfg: Config) -> int:
    """The two dense float32 matrices, plus (from a file) the parsed lines: ≈ 150 bytes of
    Python objects per line of ≈ 20 bytes."""
    if cfg.path is not None:
        try:
            return 8 * Path(cfg.path).stat().st_size
        except OSError:
            return 0  # build reports the missing file
    n_obs = cfg.density * cfg.n_items * cfg.n_users
    return int(8 * cfg.n_items * cfg.n_users + 8 * (cfg.n_items + cfg.n_users) * cfg.rank + 64 * n_obs)


def _check_size(shape: tuple[int, int], source: str, hint: str) -> None:
    if shape[0] * shape[1] > MAX_ENTRIES:
        raise UserError(f"{source}: a {shape[0]} × {shape[1]} (items × users) matrix is too large to hold densely "
                        f"(more than {MAX_ENTRIES:,} entries){hint}")


def build(cfg: Config) -> Dataset:
    if cfg.path is not None:
        items, users, values = read_ratings(cfg.path)
        shape = (int(items.max()) + 1, int(users.max()) + 1)
        _check_size(shape, f"data.path: '{cfg.path}'", "; ids must be 1-based and contiguous")
    else:
        shape = (cfg.n_items, cfg.n_users)
        _check_size(shape, "data.n_items × data.n_users", "")
        items, users, values = synthetic(cfg)
    n = len(values)
    n_test = min(max(1, int(round(cfg.test_fraction * n))), n - 1)
    test = np.zeros(n, bool)
    test[np.random.default_rng([cfg.seed, 1]).choice(n, size=n_test, replace=False)] = True
    x_train = np.full(shape, np.nan, np.float32)
    x_test = np.full(shape, np.nan, np.float32)
    x_train[items[~test], users[~test]] = values[~test]
    x_test[items[test], users[test]] = values[test]
    return Dataset("ratings", x_train, x_test, has_missing=True)
