"""Experiment configs: YAML file → overrides → frozen, validated pydantic models.

This is the only module where raw dicts live. ``load_experiment`` returns an
``ExperimentConfig``; every error is a ``UserError`` whose message lists one
``dotted.path: what is wrong (allowed values)`` line per problem, with a "did you mean" for near
misses of key names and kinds.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import (AfterValidator, Field, NonNegativeInt, PositiveFloat, PositiveInt, PrivateAttr, ValidationError,
                      model_serializer, model_validator)

from dsmcli import data as data_registry
from dsmcli import models as model_registry
from dsmcli import objectives as objective_registry
from dsmcli import samplers as sampler_registry
from dsmcli.errors import UserError, quote
from dsmcli.flow import SOLVERS
from dsmcli.parallel import ParallelConfig
from dsmcli.tracking import TrackConfig
from dsmcli.section import NoiseScale, Section, file_paths


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """YAML 1.1 SafeLoader that also reads ``1e-3`` (no dot) as a float, like YAML 1.2, and
    refuses a key repeated in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *defaults" merges, and explicit keys may override merged ones
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{quote(key, 40)}' (first given at line {seen[key] + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


MAX_CONFIG_BYTES = 1 << 20  # a config file or override larger than this is refused unread
MAX_CONFIG_VALUES = 100_000  # values of a config after YAML aliases are expanded


def expanded_size(obj: Any, limit: int = MAX_CONFIG_VALUES) -> int:
    """Number of values in ``obj`` with every YAML alias expanded (shared lists and mappings are
    counted each time they occur), computed in time linear in the distinct objects and capped
    just above ``limit`` (a recursive alias counts as over the limit)."""
    sizes: dict[int, int] = {}
    over = limit + 1

    def size(o) -> int:
        if not isinstance(o, (list, dict)):
            return 1
        if id(o) in sizes:
            return sizes[id(o)]
        sizes[id(o)] = over  # a cycle back to o: infinite
        total = 1
        for child in (o.values() if isinstance(o, dict) else o):
            total = min(over, total + size(child))
            if total >= over:
                break
        sizes[id(o)] = total
        return total

    try:
        return size(obj)
    except RecursionError:
        return over


def parse_yaml(text: str, source: str) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise UserError(f"{source}: {len(text)} characters of YAML; a config is at most {MAX_CONFIG_BYTES} (1 MiB)")
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{source}: malformed YAML{where}: {quote(problem, 200)}") from None
    except RecursionError:
        raise UserError(f"{source}: the YAML is nested too deeply to be a config") from None
    if expanded_size(value) > MAX_CONFIG_VALUES:
        raise UserError(f"{source}: the YAML expands to more than {MAX_CONFIG_VALUES} values (through its "
                        f"aliases, '*name'); a config is far smaller: remove the aliases") from None
    return value


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None, width=100)


# --------------------------------------------------------------------------- sections
def _union(registry: dict):
    members = tuple(m.Config for m in registry.values())
    return Annotated[Union[members], Field(discriminator="kind")] if len(members) > 1 else members[0]


DataConfig = _union(data_registry.REGISTRY)
ModelConfig = _union(model_registry.REGISTRY)
ObjectiveConfig = _union(objective_registry.REGISTRY)


class OptimConfig(Section):
    """Optax optimiser: ``adam``, ``adamw`` or ``sgd``; schedule ``constant`` or ``cosine``
    (decay to ``lr * final_lr_ratio`` over the run), after ``warmup_steps`` of linear warm-up;
    optional global-norm gradient clipping."""

    kind: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: NonNegativeInt = 0
    final_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: PositiveFloat | None = None
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    b1: float = Field(0.9, ge=0.0, lt=1.0)
    b2: float = Field(0.999, ge=0.0, lt=1.0)

    # The keys each kind uses; the others are neither shown (--print-config, config.yaml) nor
    # accepted with a value other than their default.
    KIND_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {"adam": ("b1", "b2"), "adamw": ("b1", "b2", "weight_decay"),
                                                       "sgd": ("momentum",)}

    @model_validator(mode="after")
    def _keys_of_the_kind(self):
        own = self.KIND_KEYS[self.kind]
        for key in ("weight_decay", "momentum", "b1", "b2"):
            if key not in own and getattr(self, key) != type(self).model_fields[key].default:
                users = [k for k, keys in self.KIND_KEYS.items() if key in keys]
                raise ValueError(f"'{key}' is used by optim.kind {' and '.join(users)} only, not '{self.kind}'")
        return self

    @model_serializer(mode="wrap")
    def _without_other_kinds_keys(self, handler):
        out = handler(self)
        own = self.KIND_KEYS[self.kind]
        return {k: v for k, v in out.items() if k not in ("weight_decay", "momentum", "b1", "b2") or k in own}


MAX_STEPS = 2**31 - 1  # the step counter (and the random key of step t) is a 32-bit integer


class TrainConfig(Section):
    """Steps are fused ``log_every`` at a time into one ``lax.scan`` dispatch, so ``eval_every``
    and ``ckpt_every`` must be multiples of ``log_every``. With ``on_nonfinite: skip_step`` a
    step whose loss or gradient is non-finite is skipped, and ``max_consecutive_skips`` skipped
    steps in a row fail the run (exit 1): a run that skips everything is not a success."""

    steps: NonNegativeInt = Field(5000, le=MAX_STEPS)
    batch_size: PositiveInt = 512
    log_every: PositiveInt = 100
    eval_every: PositiveInt = 1000
    ckpt_every: PositiveInt = 1000
    keep_checkpoints: PositiveInt = 3
    on_nonfinite: Literal["stop", "skip_step"] = "stop"
    max_consecutive_skips: PositiveInt = 100
    eval_batch: PositiveInt = 4096
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)  # evaluate/sample with an EMA of the parameters

    @model_validator(mode="after")
    def _multiples(self):
        for name in ("eval_every", "ckpt_every"):
            if getattr(self, name) % self.log_every:
                raise ValueError(
                    f"'{name}' ({getattr(self, name)}) must be a multiple of 'log_every' ({self.log_every}): "
                    f"steps are fused log_every at a time"
                )
        return self


class UniformInit(Section):
    kind: Literal["uniform"] = "uniform"
    low: float = -8.0
    high: float = 8.0

    @model_validator(mode="after")
    def _order(self):
        if self.low >= self.high:
            raise ValueError(f"'low' ({self.low}) must be < 'high' ({self.high})")
        return self


class GaussianInit(Section):
    kind: Literal["gaussian"] = "gaussian"
    std: PositiveFloat = 1.0


class DataInit(Section):
    kind: Literal["data"] = "data"


InitConfig = Annotated[Union[UniformInit, GaussianInit, DataInit], Field(discriminator="kind")]


ADAPTIVE_SAMPLERS = ("mala", "ab_mh")
INPAINTING_SAMPLERS = tuple(k for k, m in sampler_registry.REGISTRY.items() if getattr(m, "INPAINTS", False))


class InpaintConfig(Section):
    """Inpainting (``annealed_langevin``, ``pc``): the ``mask`` region of held-out images, a
    ``fraction`` of the pixels, is sampled given the rest (``left``/``right``/``top``/``bottom``:
    that share of the columns or rows; ``centre``: a centred rectangle of that area; ``random``:
    pixels drawn once from ``sample.seed``; vectors: ``left``/``right``/``random`` coordinates)."""

    mask: Literal["left", "right", "top", "bottom", "centre", "random"] = "right"
    fraction: float = Field(0.5, gt=0.0, lt=1.0)


class SampleConfig(Section):
    """Sampler settings (DESIGN.md §3). ``step_size`` is ε in x ← x + (ε/2)s(x) + √ε z (``auto``:
    adapted during ``adapt_steps`` warm-up steps by dual averaging toward ``target_accept``); for
    annealed Langevin ``steps`` is per noise level and level i uses αᵢ = ε σᵢ²/σ_L². The σ
    schedule is geometric from ``sigma_max`` to ``sigma_min`` in ``n_sigmas`` levels (default:
    the objective's own schedule where it has one)."""

    kind: Literal[tuple(sampler_registry.REGISTRY)] = "langevin"
    n: PositiveInt = 5000
    steps: PositiveInt = 1000
    step_size: PositiveFloat | Literal["auto"] = 1e-3
    target_accept: float = Field(0.574, gt=0.0, lt=1.0)  # step_size: auto (MALA's optimal rate, Roberts & Rosenthal 1998)
    adapt_steps: PositiveInt = 500  # warm-up steps of step_size: auto (dual averaging), before the `steps`
    trace_draws: PositiveInt = 100  # MCMC diagnostics: states kept per chain (thinned over the steps)
    trace_projections: PositiveInt = 4  # ... as this many fixed random projections of each particle
    trace_chains: PositiveInt = 1000  # ... for at most this many particles (chains)
    init: InitConfig = Field(default_factory=UniformInit)
    batch: PositiveInt | None = None
    sigma_max: NoiseScale | None = None
    sigma_min: NoiseScale | None = None
    n_sigmas: PositiveInt | None = None
    denoise: bool = False
    # pc: predictor-corrector sampling of the reverse-time SDE (steps: its time steps)
    predictor: Literal["reverse_diffusion", "euler_maruyama", "none"] = "reverse_diffusion"
    corrector: Literal["langevin", "none"] = "langevin"
    snr: PositiveFloat = 0.16
    corrector_steps: PositiveInt = 1
    # ode: the probability-flow ODE (diffrax); rtol/atol for dopri5, steps for heun and euler
    solver: Literal[SOLVERS] = "dopri5"
    rtol: PositiveFloat = 1e-5
    atol: PositiveFloat = 1e-5
    inpaint: InpaintConfig | None = None
    prior: Literal["normal", "gmm"] = "normal"  # ancestral: z ~ N(0, I), or a Gaussian mixture fitted to the training codes
    n_components: PositiveInt = 10  # components of the gmm prior

    @model_validator(mode="after")
    def _schedule(self):
        if self.step_size == "auto" and self.kind not in ADAPTIVE_SAMPLERS:
            raise ValueError(f"'step_size: auto' adapts ε to an acceptance rate, which only the Metropolis-adjusted "
                             f"samplers have ({', '.join(ADAPTIVE_SAMPLERS)}), not '{self.kind}'; give a number")
        if self.kind == "pc" and self.predictor == "none" and self.corrector == "none":
            raise ValueError("'predictor' and 'corrector': at least one of them must not be 'none'")
        if self.prior != "normal" and self.kind != "ancestral":
            raise ValueError(f"'prior' is the latent prior of sample.kind ancestral, not of '{self.kind}'")
        if self.inpaint is not None and self.kind not in INPAINTING_SAMPLERS:
            raise ValueError(f"'inpaint' is done by sample.kind {' and '.join(INPAINTING_SAMPLERS)}, not '{self.kind}'")
        given = [self.sigma_max is not None, self.sigma_min is not None, self.n_sigmas is not None]
        if any(given) and not all(given):
            raise ValueError("give all of 'sigma_max', 'sigma_min' and 'n_sigmas', or none (the objective's schedule)")
        if all(given) and self.sigma_max <= self.sigma_min:
            raise ValueError(f"'sigma_max' ({self.sigma_max}) must be > 'sigma_min' ({self.sigma_min})")
        return self


class EvalConfig(Section):
    """Model metrics of ``dsm eval`` (and the trainer's evaluations) with settings of their own:
    the likelihood of continuous-time score models (``nll``, ``bpd``) by the probability-flow ODE
    on the first ``nll_n`` held-out rows, the divergence exact up to ``exact_trace_max_dim``
    dimensions and estimated by ``n_probes`` Rademacher probes above, solved by ``solver`` with
    ``rtol``/``atol`` (dopri5) or ``steps`` fixed steps."""

    nll_n: PositiveInt = 1000
    exact_trace_max_dim: NonNegativeInt = 16
    n_probes: int = Field(2, ge=2)  # >= 2: their spread gives the trace estimator's standard error
    solver: Literal[SOLVERS] = "dopri5"
    rtol: PositiveFloat = 1e-5
    atol: PositiveFloat = 1e-5
    steps: PositiveInt = 100
    iw_samples: PositiveInt = 1000  # importance samples per row of nll_iw (VAE family; the first nll_n rows)


SEED_LIMIT = 2**32


def _seed(value: int) -> int:
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"must be an integer from 0 to {SEED_LIMIT - 1} (JAX's random key holds 32 bits of "
                         f"it: larger seeds would repeat smaller ones)")
    return value


Seed = Annotated[int, AfterValidator(_seed)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=100)]


class ExperimentConfig(Section):
    name: Name
    seed: Seed = 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=lambda: model_registry.REGISTRY[model_registry.DEFAULT_KIND].Config())
    objective: ObjectiveConfig
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)

    # {dotted key: the path as the user wrote it} for every file path of the config (stored
    # absolute); provenance records both in meta.json.
    _paths_as_written: dict = PrivateAttr(default_factory=dict)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def file_paths(self) -> dict[str, str]:
        """``{dotted.key: absolute path}`` of every file the config names (``data.path``)."""
        return file_paths(self)

    def paths_as_written(self) -> dict[str, str]:
        return {k: self._paths_as_written.get(k, v) for k, v in self.file_paths().items()}


# Sections that are unions over kinds, and the kind used when a mapping gives none.
_UNIONS = {
    ("data",): (data_registry.REGISTRY, None),
    ("model",): (model_registry.REGISTRY, model_registry.DEFAULT_KIND),
    ("objective",): (objective_registry.REGISTRY, None),
    ("sample", "init"): ({"uniform": UniformInit, "gaussian": GaussianInit, "data": DataInit}, "uniform"),
}


def _section_class(path: tuple[str, ...], raw_section: Any):
    """The pydantic class that validates ``path`` given the raw mapping found there."""
    if path in _UNIONS:
        registry, _ = _UNIONS[path]
        kind = raw_section.get("kind") if isinstance(raw_section, dict) else None
        entry = registry.get(kind) if isinstance(kind, str) else None
        return None if entry is None else getattr(entry, "Config", entry)
    cls = ExperimentConfig
    for part in path:
        field = cls.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        cls = ann if isinstance(ann, type) and issubclass(ann, Section) else None
        if cls is None:
            return None
    return cls


# --------------------------------------------------------------------------- overrides
def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=VALUE`` → (["a", "b", "c"], YAML-parsed VALUE)."""
    if "=" not in item:
        raise UserError(f"override '{quote(item, 80)}': expected KEY=VALUE with a dotted key, e.g. objective.sigma=0.05")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"override '{quote(item, 80)}': '{quote(key, 40)}' is not a dotted key like optim.lr")
    return parts, parse_yaml(value, f"override '{quote(item, 80)}'") if value.strip() else None


def apply_overrides(raw: dict, items: list[str] | dict) -> dict:
    """Apply overrides to a raw config: a mapping value replaces the whole subtree."""
    raw = copy.deepcopy(raw)
    pairs = [parse_override(i) for i in items] if isinstance(items, list) else [(k.split("."), v) for k, v in items.items()]
    for parts, value in pairs:
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                if nxt is not None:
                    raise UserError(f"override {'.'.join(parts)}: '{'.'.join(parts[: i + 1])}' is not a section")
                nxt = node[part] = {}
            node = nxt
        node[parts[-1]] = value
    return raw


# --------------------------------------------------------------------------- validation
def _fill_default_kinds(raw: dict) -> None:
    for path, (_, default) in _UNIONS.items():
        node = raw
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), dict) and default:
            node[path[-1]].setdefault("kind", default)


def _unknown_keys(raw: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Errors for keys that no section accepts, with the nearest valid key suggested."""
    if not isinstance(raw, dict):
        return []
    cls = _section_class(path, raw) if path else ExperimentConfig
    if cls is None:
        return []
    allowed = list(cls.model_fields)
    errors = []
    for key, value in raw.items():
        where = ".".join((*path, quote(str(key), 40)))
        if key not in allowed:
            close = difflib.get_close_matches(str(key)[:100], allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{'.'.join((*path, close[0]))}'? " if close else ""
            errors.append(f"{where}: unknown key; {hint}allowed keys here: {', '.join(allowed)}")
        else:
            errors.extend(_unknown_keys(value, (*path, key)))
    return errors


def _drop_union_tags(loc: tuple, raw: Any) -> list[str]:
    """Pydantic puts the union tag into error locations (data.gmm.means); remove it."""
    out, node = [], raw
    for i, part in enumerate(loc):
        # the tag, also where a field has its name (objective.kind sde has a field 'sde'): a field
        # holding a scalar cannot be followed by further parts
        is_field = isinstance(node, dict) and part in node and (i + 1 == len(loc) or isinstance(node[part], (dict, list)))
        if isinstance(node, dict) and not is_field and node.get("kind") == part:
            continue
        out.append(str(part))
        node = node.get(part) if isinstance(node, dict) else (node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    return out


def _format_error(err: dict, raw: dict) -> str:
    path = ".".join(_drop_union_tags(err["loc"], raw)) or "(top level)"
    kind, ctx = err["type"], err.get("ctx", {})
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        union = _UNIONS.get(tuple(path.split(".")))
        allowed = list(union[0]) if union else [t.strip("'\" ") for t in str(ctx.get("expected_tags", "")).split(",")]
        got = ctx.get("tag")
        close = difflib.get_close_matches(str(got)[:100], allowed, n=1, cutoff=0.5) if got else []
        hint = f"; did you mean '{close[0]}'?" if close else ""
        what = f"unknown kind '{quote(got, 40)}'" if kind == "union_tag_invalid" else "missing 'kind'"
        return f"{path}.kind: {what}{hint} (allowed: {', '.join(allowed)})"
    if kind == "literal_error":
        got = err.get("input")
        allowed = [a.strip("'\" ") for a in re.split(r",| or ", str(ctx.get("expected", ""))) if a.strip()]
        close = difflib.get_close_matches(str(got)[:100], allowed, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{path}: '{quote(got, 40)}' is not allowed{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"{path}: required but missing"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {quote(got if not isinstance(got, str) else repr(got))})"
    return f"{path}: {msg}{shown}"


def validate(raw: Any, source: str) -> ExperimentConfig:
    """Validate a raw mapping; all problems are reported at once in one ``UserError``."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: an experiment config must be a YAML mapping of sections, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    def kind_of(section: str):  # the raw kind string of a section (anything else: None; validation reports it)
        kind = raw[section].get("kind") if isinstance(raw.get(section), dict) else None
        return kind if isinstance(kind, str) else None

    objective_cls = getattr(objective_registry.REGISTRY.get(kind_of("objective")), "make", None)
    images = getattr(data_registry.REGISTRY.get(kind_of("data")), "IMAGES", False)
    default_model = (images and getattr(objective_cls, "DEFAULT_IMAGE_MODEL", None)) or getattr(objective_cls, "DEFAULT_MODEL", None)
    if "model" not in raw and default_model:
        raw["model"] = {"kind": default_model}  # e.g. ncsn → a noise-conditional network (conv for images)
    _fill_default_kinds(raw)
    problems = _unknown_keys(raw)
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        problems += [_format_error(err, raw) for err in e.errors() if err["type"] != "extra_forbidden"]
    else:
        if not problems:
            cfg._paths_as_written = {k: _raw_at(raw, k) or v for k, v in cfg.file_paths().items()}
            return cfg
    lines = "\n".join(f"  {p}" for p in dict.fromkeys(problems))
    raise UserError(f"invalid config {source}:\n{lines}")


def flatten(tree, prefix: str = "") -> dict:
    """``{"a.b.c": value}`` for every leaf of a nested dict (a config's ``to_dict()``)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _raw_at(raw: Any, dotted: str):
    for part in dotted.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw if isinstance(raw, str) else None


def read_yaml_file(path: str | Path, what: str = "--config") -> Any:
    from dsmcli.fsio import regular_file_problem

    problem = regular_file_problem(path)
    if problem:
        raise UserError(f"{what}: file '{quote(str(path), 120)}' {problem}" + (" (give the YAML file itself)" if "directory" in problem else ""))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        text = data.decode()
    except OSError as e:
        raise UserError(f"{what}: cannot read '{quote(str(path), 120)}': {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{what}: '{quote(str(path), 120)}' is not a UTF-8 text file") from None
    return parse_yaml(text, str(path))


def load_experiment(path: str | Path, overrides: list[str] | None = None, name: str | None = None) -> ExperimentConfig:
    """Read ``path``, apply ``KEY=VALUE`` overrides, fill the name (the file's stem by default)."""
    raw = read_yaml_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: an experiment config must be a YAML mapping of sections")
    raw = apply_overrides(raw, overrides or [])
    if name is not None:
        raw["name"] = name
    raw.setdefault("name", Path(path).stem)
    return validate(raw, str(path))
