"""Base class of every config section: frozen, and unknown keys are errors."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, NonNegativeInt, PositiveInt


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SyntheticData(Section):
    """Fields shared by data kinds that are sampled from a known generating process."""

    n_train: PositiveInt = 20000
    n_test: PositiveInt = 5000
    seed: NonNegativeInt = 0  # seeds the data set itself, independent of the experiment seed


# A noise scale or standard deviation σ. Losses and samplers use σ², 1/σ and 1/σ² in float32,
# whose normal range is ≈ 1.2e-38 … 3.4e38, so σ is bounded to [1e-18, 1e18]: a positive
# float outside it (σ = 2.2e-309 validated once and then diverged at the first step) is refused.
SIGMA_RANGE = (1e-18, 1e18)


def _noise_scale(value: float) -> float:
    low, high = SIGMA_RANGE
    if not low <= value <= high:
        raise ValueError(f"must be between {low:g} and {high:g} (σ² and 1/σ² are computed in float32)")
    return value


NoiseScale = Annotated[float, AfterValidator(_noise_scale)]


class _FilePathMarker:
    """Marks a config field that names a file or directory (see ``FilePath``)."""


def _absolute(value: str) -> str:
    import os

    if not value.strip():
        raise ValueError("must be a path to a file or directory, got an empty string")
    return os.path.abspath(os.path.expanduser(value))


# A path in a config (``data.path``): resolved against the current directory when the config is
# validated and stored absolute in the run's config.yaml, so a run finds its data from anywhere.
FilePath = Annotated[str, AfterValidator(_absolute), _FilePathMarker()]


def _marks_path(annotation) -> bool:
    from typing import get_args

    if any(isinstance(m, _FilePathMarker) for m in getattr(annotation, "__metadata__", ())):
        return True
    return any(_marks_path(a) for a in get_args(annotation))


def file_paths(section: BaseModel, prefix: str = "") -> dict[str, str]:
    """``{dotted.key: path}`` of every ``FilePath`` field set in ``section`` and its subsections."""
    out = {}
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(file_paths(value, key + "."))
        elif value is not None and (any(isinstance(m, _FilePathMarker) for m in field.metadata) or _marks_path(field.annotation)):
            out[key] = value
    return out
