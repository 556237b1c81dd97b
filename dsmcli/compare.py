"""``dsm compare``: variants × seeds → train (or reuse), sample, evaluate → one table.

A compare config names a ``base`` experiment (path relative to the compare file), ``seeds`` and
``variants``, each a ``name`` and a ``set`` of dotted overrides (a mapping value replaces the
whole subtree). Each variant × seed becomes the run ``<compare name>-<variant>``; a completed
run whose resolved training config is identical (``name`` and ``sample`` aside: sampling does
not change what was trained) is reused instead of retrained. A failing variant is reported in
its row and the others go on. Output: ``RUNS/compare-<name>/v<NNN>/`` with ``comparison.json``
(per variant: mean and std over seeds of every metric, and the run directories),
``comparison.md`` and figures.
"""

from __future__ import annotations

import json
import math
import traceback
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from dsmcli import runs
from dsmcli.errors import NothingToSample, UserError, quote
from dsmcli.section import Section


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class Variant(Section):
    name: str = Field(pattern=NAME_PATTERN, max_length=90)
    set: dict[str, Any] = Field(default_factory=dict)


class CompareConfig(Section):
    name: str = Field(pattern=NAME_PATTERN, max_length=runs.NAME_MAX - len("compare-"))
    base: str
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    variants: list[Variant] = Field(min_length=1)

    @field_validator("variants")
    @classmethod
    def _unique(cls, variants):
        names = [v.name for v in variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(dup)}")
        return variants


def load_compare(path: str | Path) -> tuple[CompareConfig, Path]:
    from pydantic import ValidationError

    from dsmcli.config import _format_error, read_yaml_file

    raw = read_yaml_file(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a compare config must be a mapping with base, seeds and variants")
    raw.setdefault("name", Path(path).stem)
    try:
        cfg = CompareConfig.model_validate(raw)
    except ValidationError as e:
        lines = "\n".join(f"  {_format_error(err, raw)}" for err in e.errors())
        raise UserError(f"invalid compare config {path}:\n{lines}") from None
    base = (Path(path).parent / cfg.base).resolve()
    if not base.is_file():
        raise UserError(f"{path}: base: file '{cfg.base}' does not exist (relative to the compare file)")
    return cfg, base


def variant_configs(cfg: CompareConfig, base: Path, overrides: list[str]):
    """Validated experiment configs for every variant × seed (all checked before any training)."""
    from dsmcli.config import apply_overrides, read_yaml_file, validate

    raw_base = read_yaml_file(base, what="base") or {}
    if not isinstance(raw_base, dict):
        raise UserError(f"base: '{base}' holds a YAML {type(raw_base).__name__}, not an experiment config "
                        f"(a mapping of sections: data, model, objective, ...)")
    raw_base = apply_overrides(raw_base, overrides)
    out = []
    for variant in cfg.variants:
        run_name = f"{cfg.name}-{variant.name}"
        if len(run_name) > runs.NAME_MAX:
            raise UserError(f"variant '{variant.name}': its runs are named '{quote(run_name, 40)}' ({len(run_name)} "
                            f"characters; at most {runs.NAME_MAX}): shorten the compare name or the variant name")
        for seed in cfg.seeds:
            raw = apply_overrides(raw_base, variant.set)
            raw.update(seed=seed, name=f"{cfg.name}-{variant.name}")
            out.append((variant.name, seed, validate(raw, f"variant '{variant.name}' of {base.name}")))
    return out


def _training_identity(cfg_dict: dict) -> str:
    return json.dumps({k: v for k, v in cfg_dict.items() if k not in ("name", "sample")}, sort_keys=True)


def find_reusable(root: Path, cfg) -> Path | None:
    """A completed run under ``root`` whose training config equals ``cfg``'s. Each run's saved
    config is re-validated first, so keys added (with defaults) since it ran do not count as a
    difference."""
    from dsmcli.config import read_yaml_file, validate

    from dsmcli import provenance

    want = _training_identity(cfg.to_dict())
    for row in runs.list_runs(root):
        if row["status"] != "completed" or row["objective"] != cfg.objective.kind:
            continue  # cheap checks before parsing and validating the config
        path = Path(row["path"])
        try:
            have = validate(read_yaml_file(path / "config.yaml"), str(path))
        except UserError:
            continue  # a run of an older, incompatible schema
        if _training_identity(have.to_dict()) != want or runs.damage(path):
            continue
        if provenance.fingerprint_matches(path, have, runs.read_json(path / "meta.json", {})):
            return path  # same config, and its data files are still the ones it was trained on
    return None


def evaluate_run(run_dir: Path, sample_section: dict | None) -> dict:
    """Eval + sample metrics of one run (sampling with ``sample_section`` if given)."""
    from dsmcli import api

    metrics: dict[str, Any] = {}
    summary = runs.read_json(run_dir / "summary.json", {}) or {}
    for key in ("loss", "steps_per_sec", "wall_s", "compile_s"):
        if isinstance(summary.get(key), (int, float)):
            metrics[key] = summary[key]
    _, result = api.evaluate(run_dir, figures=False)  # the comparison draws its own panels
    metrics.update({k: v for k, v in result.items() if k != "step" and k not in metrics})
    overrides = [f"sample={json.dumps(sample_section)}"] if sample_section else []
    try:
        npz, record = api.sample(run_dir, overrides=overrides)
    except NothingToSample:  # e.g. AutoRec: compared on its evaluation metrics only
        return metrics
    skip = {"step", "file", "sampler", "n", "seed"}
    metrics.update({k: v for k, v in record.items() if k not in skip})
    metrics["_samples"] = str(npz)
    return metrics


def aggregate(rows: list[dict]) -> list[dict]:
    """Per variant: mean and std (ddof 1; 0 for one seed) over seeds of every metric."""
    import numpy as np

    table = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        group = [r for r in rows if r["variant"] == variant]
        done = [r for r in group if r["status"] == "completed"]
        entry = {
            "variant": variant,
            "status": "completed" if len(done) == len(group) else "failed",
            "seeds": [r["seed"] for r in group],
            "runs": [r.get("run_dir") for r in group],
            "errors": [f"seed {r['seed']}: {r['error']}" for r in group if r["status"] != "completed"],
            "metrics": {},
        }
        keys = [k for k in dict.fromkeys(k for r in done for k in r["metrics"]) if not k.startswith("_")]
        for key in keys:
            values = [r["metrics"][key] for r in done if r["metrics"].get(key) is not None]
            if not values or not all(isinstance(v, (int, float, list)) for v in values):
                continue
            arr = np.asarray(values, dtype=float)
            std = arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros_like(arr[0])
            entry["metrics"][key] = {"mean": np.mean(arr, axis=0).tolist(), "std": np.asarray(std).tolist(), "n": len(arr)}
        table.append(entry)
    return table


COLUMNS = ("score_error", "recon_mse", "elbo", "probe_acc", "kmeans_nmi", "anomaly_auroc", "fd", "fd_floor", "mmd", "sliced_w2", "mode_weight_error", "mode_weights", "escaped_fraction", "acceptance",
           "kl_grid",
           "loss", "steps_per_sec", "wall_s")


def _cell(m: dict | None) -> str:
    if m is None:
        return "-"
    mean, std = m["mean"], m["std"]
    if isinstance(mean, list):
        return "[" + ", ".join(f"{a:.2f}" for a in mean) + "]"
    if m["n"] > 1:
        return f"{mean:.4g} ± {std:.2g}"
    return f"{mean:.4g}"


def table_columns(table: list[dict]) -> list[str]:
    present = {k for row in table for k in row["metrics"]}
    escaped = any(row["metrics"].get("escaped_fraction", {}).get("mean") for row in table)
    return [c for c in COLUMNS if c in present and (c != "escaped_fraction" or escaped)]  # the rest: comparison.json


def markdown(table: list[dict], title: str) -> str:
    cols = table_columns(table)
    lines = [f"# {title}", "", "| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in table:
        cells = [_cell(row["metrics"].get(c)) for c in cols] if row["status"] == "completed" else ["failed"] + [""] * (len(cols) - 1)
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    failures = [f"- **{r['variant']}**: " + "; ".join(r["errors"]) for r in table if r["errors"]]
    if failures:
        lines += ["", "Failures:", *failures]
    lines += ["", "Mean ± sample std over seeds. Sample metrics against held-out data."]
    return "\n".join(lines) + "\n"


def print_table(table: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = table_columns(table)
    t = Table(title=title, header_style="bold", show_edge=False)
    for c in ["variant", "status", *cols]:
        t.add_column(c, overflow="fold")
    for row in table:
        t.add_row(row["variant"], row["status"], *[_cell(row["metrics"].get(c)) for c in cols])
    Console(width=max(140, Console().width)).print(t)


def figures(out_dir: Path, rows: list[dict]) -> None:
    """Panels per variant (first seed) on shared axes: samples and score fields (2-D data), or
    mosaics of sampled images (image data); loss curves."""
    import numpy as np

    from dsmcli import experiment, plots
    from dsmcli.config import load_experiment
    from dsmcli.train import load_state

    firsts = {}
    for r in rows:
        if r["status"] == "completed" and r["variant"] not in firsts:
            firsts[r["variant"]] = r
    if not firsts:
        return
    curves = {v: runs.MetricsLog(Path(r["run_dir"]) / "metrics.jsonl").read() for v, r in firsts.items()}
    plots.loss_overlay(out_dir / "loss.png", curves)
    any_run = Path(next(iter(firsts.values()))["run_dir"])
    exp0 = experiment.build(load_experiment(any_run / "config.yaml"))
    samples = {v: np.load(r["metrics"]["_samples"])["x"] for v, r in firsts.items() if "_samples" in r["metrics"]}
    if exp0.data.image_shape is not None and samples:
        plots.image_panels(out_dir / "samples.png", samples, exp0.data.image_shape)
    if exp0.data.dim != 2:
        return
    plots.sample_panels(out_dir / "samples.png", samples, exp0.data)
    fields = {}
    for v, r in firsts.items():
        exp = experiment.build(load_experiment(Path(r["run_dir"]) / "config.yaml"))
        if not exp.objective.has_score:
            continue
        _, params = load_state(exp, Path(r["run_dir"]))
        fields[v] = exp.score_fn(params)
    if exp0.data.has_score:
        fields["true ∇log p"] = exp0.data.density.score
    plots.score_field_plot(out_dir / "score_fields.png", fields, exp0.data)


def run(config: str | None, args: list[str], *, runs_dir: str | None = None) -> tuple[Path, list[dict]]:
    """``dsm compare``: with ``config``, ``args`` are KEY=VALUE overrides of the base; without,
    ``args`` are existing run directories (one row each)."""
    root = runs.runs_root(runs_dir)
    if config is None:
        if not args:
            raise UserError("compare: give --config COMPARE.yaml, or one or more run directories")
        run_dirs = [runs.require_run_dir(a) for a in args]
        name = "runs"
        rows = []
        for d in run_dirs:
            row = {"variant": f"{d.parent.name}/{d.name}", "seed": None, "run_dir": str(d)}
            rows.append(_attempt(row, lambda d=d: evaluate_run(d, None)))
    else:
        cfg, base = load_compare(config)
        name = cfg.name
        planned = variant_configs(cfg, base, args)
        rows = []
        for variant, seed, exp_cfg in planned:
            row = {"variant": variant, "seed": seed}
            rows.append(_attempt(row, lambda c=exp_cfg, r=row: _train_and_measure(c, r, root)))
    out_dir = runs.allocate(root, f"compare-{name}")
    table = aggregate(rows)
    runs.write_json(out_dir / "comparison.json", {"name": name, "config": str(config) if config else None,
                                                  "variants": table, "runs": rows})
    runs.write_text(out_dir / "comparison.md", markdown(table, f"compare-{name}"))
    try:
        figures(out_dir, rows)
    except Exception as e:  # figures are a courtesy: never lose the table over them
        print(f"warning: comparison figures failed: {type(e).__name__}: {e}")
    print_table(table, f"compare-{name}")
    return out_dir, table


def _train_and_measure(cfg, row: dict, root: Path) -> dict:
    from dsmcli import api

    run_dir = find_reusable(root, cfg)
    row["reused"] = run_dir is not None
    if run_dir is None:
        run_dir, _ = api.train_config(cfg, runs_dir=str(root))
    row["run_dir"] = str(run_dir)
    return evaluate_run(run_dir, cfg.sample.model_dump(mode="json"))


def _attempt(row: dict, fn) -> dict:
    """Run one variant × seed; a failure becomes the row's status and reason."""
    try:
        row["metrics"] = fn()
        row["status"] = "completed"
    except Exception as e:  # keep going: the failure is reported in the table
        row["status"] = "failed"
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["metrics"] = {}
        if not isinstance(e, (UserError,)):
            row["traceback"] = traceback.format_exc(limit=5)
    for k, v in list(row["metrics"].items()):
        if isinstance(v, float) and not math.isfinite(v):
            row["metrics"][k] = None
    return row
