"""Base class of every config section: frozen, and unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SyntheticData(Section):
    """Fields shared by data kinds that are sampled from a known generating process."""

    n_train: PositiveInt = 20000
    n_test: PositiveInt = 5000
    seed: NonNegativeInt = 0  # seeds the data set itself, independent of the experiment seed
