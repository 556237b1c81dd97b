"""``dsm compare``: variants × seeds → train (or reuse), sample, evaluate → one table.

Two ways to say what to compare:

* a **compare config**: a ``base`` experiment (path relative to the compare file), ``seeds``
  and ``variants``, each a ``name`` and a ``set`` of dotted overrides (a mapping value replaces
  the whole subtree);
* an **experiment config** and ``--sweep KEY=V1,V2,...`` (repeatable; the variants are the
  product of the sweeps, named ``key=value,...``) with ``--seeds 0,1,2``. ``--sweep`` also
  multiplies a compare config's variants.

Command-line ``KEY=VALUE`` overrides whose key is a compare key (``seeds``, ``name``) change the
comparison (``seeds=[0,1]``); the others change the base experiment. Each variant × seed becomes
a run named ``<compare name>-<variant>``; a completed run whose resolved training config is
identical (``name`` and ``sample`` aside: sampling does not change what was trained) and whose
data files are unchanged is reused instead of retrained, so re-running an interrupted sweep
trains only what is missing. The runs go to this process, ``--jobs N`` local workers or a Ray
cluster (``dsmcli.launch``). A failing variant is reported in its row and the others go on.
Output: ``RUNS/compare-<name>/v<NNN>/`` with ``comparison.json`` (per variant: mean and std over
seeds of every metric, the run directories; the sweep, seeds and overrides it was given),
``comparison.md`` (the same table) and figures.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from dsmcli import runs
from dsmcli.errors import NothingToSample, UserError, quote
from dsmcli.section import Section

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
COMPARE_KEYS = ("name", "seeds")  # overrides of the comparison itself (the rest go to the base experiment)


class Variant(Section):
    name: str = Field(pattern=NAME_PATTERN, max_length=90)
    set: dict[str, Any] = Field(default_factory=dict)


class CompareConfig(Section):
    name: str = Field(pattern=NAME_PATTERN, max_length=runs.NAME_MAX - len("compare-"))
    base: str
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    variants: list[Variant] = Field(min_length=1)
    against: str | None = Field(None, pattern=r"^[a-z_]+(\.[a-z_]+)+$")  # a numeric config key: metrics against it

    @field_validator("variants")
    @classmethod
    def _unique(cls, variants):
        names = [v.name for v in variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(dup)}")
        return variants


EXPERIMENT_SECTIONS = ("data", "objective", "model", "optim", "train", "sample")


def _validate_compare(raw: dict, path) -> CompareConfig:
    from pydantic import ValidationError

    from dsmcli.config import _format_error

    try:
        return CompareConfig.model_validate(raw)
    except ValidationError as e:
        lines = "\n".join(f"  {_format_error(err, raw)}" for err in e.errors())
        raise UserError(f"invalid compare config {path}:\n{lines}") from None


def load_compare(path: str | Path, overrides: list[str] | None = None) -> tuple[CompareConfig, Path, list[str]]:
    """(compare config, base experiment path, the overrides left for the base experiment).

    ``path`` is a compare config, or an experiment config (then it is the base, with one
    variant, ``base``, to be multiplied by ``--sweep``)."""
    from dsmcli.config import apply_overrides, parse_override, read_yaml_file

    raw = read_yaml_file(path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a compare config must be a mapping with base, seeds and variants "
                        f"(or give an experiment config to sweep)")
    compare_items, base_items = [], []
    for item in overrides or []:
        (compare_items if parse_override(item)[0][0] in COMPARE_KEYS else base_items).append(item)
    if "base" not in raw and "variants" not in raw:
        if not any(k in raw for k in EXPERIMENT_SECTIONS):
            raise UserError(f"{path}: neither a compare config (base, seeds, variants) nor an experiment config "
                            f"(data, objective, ...)")
        name = raw.get("name") if isinstance(raw.get("name"), str) else Path(path).stem
        raw = {"name": name, "base": Path(path).name, "variants": [{"name": "base"}]}
    raw = apply_overrides(raw, compare_items)
    raw.setdefault("name", Path(path).stem)
    cfg = _validate_compare(raw, path)
    base = (Path(path).parent / cfg.base).resolve()
    if not base.is_file():
        raise UserError(f"{path}: base: file '{quote(cfg.base, 120)}' does not exist (relative to the compare file)")
    return cfg, base, base_items


def _split_values(text: str) -> list[str]:
    """``0.05,0.1`` → ["0.05", "0.1"]; commas inside brackets, braces or quotes do not split
    (``[64,64],[128,128]`` is two values)."""
    parts, depth, quote_char, current = [], 0, None, ""
    for ch in text:
        if quote_char:
            quote_char = None if ch == quote_char else quote_char
        elif ch in "'\"":
            quote_char = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def parse_sweep(item: str) -> tuple[str, list[tuple[str, Any]]]:
    """``KEY=V1,V2,...`` → (key, [(value as written, YAML value), ...])."""
    from dsmcli.config import parse_yaml

    if "=" not in item:
        raise UserError(f"--sweep '{quote(item, 80)}': expected KEY=V1,V2,..., e.g. --sweep objective.sigma=0.05,0.1")
    key, values = item.split("=", 1)
    key = key.strip()
    if not key or not all(key.split(".")):
        raise UserError(f"--sweep '{quote(item, 80)}': '{quote(key, 40)}' is not a dotted key like optim.lr")
    texts = _split_values(values)
    if not all(texts):
        raise UserError(f"--sweep '{quote(item, 80)}': give one or more comma-separated values")
    if len(set(texts)) != len(texts):
        raise UserError(f"--sweep '{quote(item, 80)}': a value is repeated")
    return key, [(t, parse_yaml(t, f"--sweep {key}")) for t in texts]


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds: '{quote(text, 60)}' is not a comma-separated list of integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: '{quote(text, 60)}': give distinct integers, e.g. 0,1,2")
    return seeds


def _run_slug(display: str) -> str:
    """A run-name-safe form of a variant name (``objective.sigma=0.05,optim.lr=1e-3`` →
    ``objective.sigma-0.05_optim.lr-1e-3``)."""
    slug = display.replace("=", "-").replace(",", "_")
    slug = re.sub(r"[^A-Za-z0-9_.\-]+", "", slug).strip("-_.") or "v"
    return slug


def expand_variants(cfg: CompareConfig, sweeps: list[str]) -> list[tuple[str, str, dict]]:
    """(display name, run slug, dotted overrides) of every variant: the config's variants times
    the product of the sweeps."""
    parsed = [parse_sweep(s) for s in sweeps]
    keys = [k for k, _ in parsed]
    if len(set(keys)) != len(keys):
        raise UserError(f"--sweep: the key {sorted(k for k in keys if keys.count(k) > 1)[0]} is swept twice")
    combos = list(itertools.product(*[values for _, values in parsed])) if parsed else [()]
    out, slugs = [], set()
    for variant in cfg.variants:
        for combo in combos:
            settings = dict(variant.set)
            label = ",".join(f"{k}={text}" for k, (text, _) in zip(keys, combo))
            settings.update({k: value for k, (_, value) in zip(keys, combo)})
            if parsed and len(cfg.variants) == 1 and variant.name == "base":
                display = label
            else:
                display = f"{variant.name},{label}" if label else variant.name
            slug = _run_slug(display)
            if slug in slugs or len(f"{cfg.name}-{slug}") > runs.NAME_MAX:
                slug = f"{slug[:40]}-{hashlib.sha256(display.encode()).hexdigest()[:8]}"
            slugs.add(slug)
            out.append((display, slug, settings))
    return out


def variant_configs(cfg: CompareConfig, base: Path, overrides: list[str], sweeps: list[str] | None = None):
    """Validated experiment configs for every variant × seed (all checked before any training)."""
    from dsmcli.config import apply_overrides, read_yaml_file, validate

    raw_base = read_yaml_file(base, what="base") or {}
    if not isinstance(raw_base, dict):
        raise UserError(f"base: '{base}' holds a YAML {type(raw_base).__name__}, not an experiment config "
                        f"(a mapping of sections: data, model, objective, ...)")
    raw_base = apply_overrides(raw_base, overrides)
    out = []
    for display, slug, settings in expand_variants(cfg, sweeps or []):
        run_name = f"{cfg.name}-{slug}"
        if len(run_name) > runs.NAME_MAX:
            raise UserError(f"variant '{quote(display, 40)}': its runs are named '{quote(run_name, 40)}' ({len(run_name)} "
                            f"characters; at most {runs.NAME_MAX}): shorten the compare name or the variant name")
        for seed in cfg.seeds:
            raw = apply_overrides(raw_base, settings)
            raw.update(seed=seed, name=run_name)
            out.append((display, seed, validate(raw, f"variant '{quote(display, 60)}' of {base.name}")))
    return out


def _training_identity(cfg_dict: dict) -> str:
    return json.dumps({k: v for k, v in cfg_dict.items() if k not in ("name", "sample", "track")}, sort_keys=True)


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


COLUMNS = ("score_error", "score_error_floor", "hessian_error", "hessian_error_floor", "recon_mse", "elbo", "nll_iw", "test_acc", "probe_acc", "trustworthiness", "kmeans_nmi", "anomaly_auroc", "fd", "fd_floor", "kid", "kid_std", "kid_floor", "mmd", "sliced_w2", "mode_weight_error", "mode_weights", "escaped_fraction", "acceptance",
           "step_size", "ess", "ess_per_s", "rhat", "ksd", "ksd_model",
           "kl_grid", "nll", "nll_se", "bpd", "nfe", "inpaint_mse", "inpaint_mse_unconditional",
           "loss", "loss_excess", "steps_per_sec", "wall_s")


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


def markdown(table: list[dict], title: str, record: dict | None = None) -> str:
    cols = table_columns(table)
    lines = [f"# {title}", ""]
    record = record or {}
    given = [("seeds", ", ".join(map(str, record["seeds"])) if record.get("seeds") else None),
             ("sweep", " × ".join(f"`{s}`" for s in record.get("sweep") or []) or None),
             ("overrides", " ".join(f"`{o}`" for o in record.get("overrides") or []) or None),
             ("runs", f"{record['launcher']}, {record['jobs']} at once" if record.get("launcher") else None),
             ("wall time", f"{record['wall_s']:.1f} s" if record.get("wall_s") is not None else None)]
    lines += [f"- {k}: {v}" for k, v in given if v]
    if any(v for _, v in given):
        lines.append("")
    lines += ["| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in table:
        cells = [_cell(row["metrics"].get(c)) for c in cols] if row["status"] == "completed" else ["failed"] + [""] * (len(cols) - 1)
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    failures = [f"- **{r['variant']}**: " + "; ".join(r["errors"]) for r in table if r["errors"]]
    if failures:
        lines += ["", "Failures:", *failures]
    lines += ["", "Mean ± sample std over seeds. Sample metrics against held-out data."]
    return "\n".join(lines) + "\n"


def print_table(table: list[dict], title: str) -> None:
    """The comparison on the terminal: cells whole; columns that do not fit move to a further
    table (``comparison.md`` has them all in one)."""
    from dsmcli.tables import print_records

    cols = table_columns(table)
    rows = [[row["variant"], row["status"], *[_cell(row["metrics"].get(c)) for c in cols]] for row in table]
    print_records(rows, ["variant", "status", *cols], title=title, keys=1)


def against_series(rows: list[dict], key: str, logs: dict | None = None) -> dict:
    """``{group label: [(x, {metric: (mean, std)}), ...]}``: the variants grouped by everything
    but ``key`` in their resolved configs (the label names what differs between groups), x the
    value of ``key``, metrics averaged over seeds; plus ``curves``: per group and x, the first
    seed's metrics.jsonl records. Sampling and training-budget keys (``sample.*``, ``train.*``)
    do not make a group: variants that only sample a model otherwise add no point, and a longer
    budget for some σ stays on its kind's line. ``logs``: the first seed's records per variant,
    where the caller has read them already."""
    from dsmcli.config import flatten, load_experiment

    done = [r for r in rows if r["status"] == "completed"]
    flat = {}
    for r in done:
        if r["variant"] not in flat:
            flat[r["variant"]] = flatten(load_experiment(Path(r["run_dir"]) / "config.yaml").to_dict())
    if not flat or any(not isinstance(f.get(key), (int, float)) for f in flat.values()):
        return {}
    keys = sorted({k for f in flat.values() for k in f})
    # what tells the groups apart: keys with two or more values (a key only some kinds have, as
    # dae's ``noise``, is not one), kinds first
    differ = sorted((k for k in keys if k not in (key, "name", "seed") and not k.startswith(("sample.", "train."))
                     and len({json.dumps(f.get(k), sort_keys=True) for f in flat.values() if f.get(k) is not None}) > 1),
                    key=lambda k: (not k.endswith(".kind"), k))

    def show(value):
        return value if isinstance(value, str) else json.dumps(value)

    label = {v: ", ".join(f"{k.rsplit('.', 1)[-1]}={show(f.get(k))}" for k in differ) or "all" for v, f in flat.items()}
    means = {e["variant"]: e["metrics"] for e in aggregate(done)}
    series: dict = {"points": {}, "curves": {}}
    seen = set()
    for variant, f in flat.items():
        if (label[variant], f[key]) in seen:  # the same training sampled otherwise: one point per model
            continue
        seen.add((label[variant], f[key]))
        metrics = {m: (v["mean"], v["std"]) for m, v in means[variant].items() if not isinstance(v["mean"], list)}
        series["points"].setdefault(label[variant], []).append((float(f[key]), metrics))
        if logs is not None and variant in logs:
            records = logs[variant]
        else:
            first = next(r for r in done if r["variant"] == variant)
            records = runs.MetricsLog(Path(first["run_dir"]) / "metrics.jsonl").read()
        series["curves"].setdefault(label[variant], []).append((float(f[key]), records))
    for part in series.values():
        for pts in part.values():
            pts.sort(key=lambda p: p[0])
    return series


def figures(out_dir: Path, rows: list[dict], against: str | None = None) -> None:
    """Panels per variant (first seed) on shared axes: samples and score fields (2-D data), or
    mosaics of sampled images (image data); loss curves. With ``against`` (a numeric config key
    the variants differ in): metrics against it (``against.png``, bias floors dashed) and the
    held-out metrics against training steps for every variant (``curves.png``)."""
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
    if against:
        series = against_series(rows, against, curves)
        if series:
            plots.against_plot(out_dir / "against.png", series["points"], against)
            plots.step_curves(out_dir / "curves.png", series["curves"], against)
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


def _groups(planned, root: Path) -> list[dict]:
    """The rows (variant × seed) grouped by training config: one run per group."""
    groups: dict[str, dict] = {}
    for variant, seed, exp_cfg in planned:
        ident = _training_identity(exp_cfg.to_dict())
        group = groups.setdefault(ident, {"root": str(root.resolve()), "config": exp_cfg.to_dict(), "rows": []})
        group["rows"].append({"variant": variant, "seed": seed, "sample": exp_cfg.sample.model_dump(mode="json")})
    return list(groups.values())


def run(config: str | None, args: list[str], *, runs_dir: str | None = None, sweeps: list[str] | None = None,
        seeds: str | None = None, jobs: int = 1, launcher: str = "local",
        ray_address: str | None = None) -> tuple[Path, list[dict]]:
    """``dsm compare``: with ``config``, ``args`` are KEY=VALUE overrides; without, ``args``
    are existing run directories (one row each)."""
    from dsmcli import launch, progress

    if launcher not in ("local", "ray"):
        raise UserError(f"--launcher: '{quote(launcher, 20)}' is not allowed (allowed: local, ray)")
    root = runs.runs_root(runs_dir)
    t_start = time.perf_counter()
    record: dict[str, Any] = {"sweep": list(sweeps or []), "overrides": list(args) if config else [],
                              "jobs": jobs, "launcher": launcher}
    if config is None:
        if not args:
            raise UserError("compare: give --config COMPARE.yaml (or EXPERIMENT.yaml with --sweep), or run directories")
        if sweeps or seeds:
            raise UserError("compare: --sweep and --seeds need --config")
        run_dirs = [runs.require_run_dir(a) for a in args]
        name = "runs"
        rows = []
        with progress.Bar("compare", len(run_dirs), unit="run") as bar:
            for k, d in enumerate(run_dirs, 1):
                row = {"variant": f"{d.parent.name}/{d.name}", "seed": None, "run_dir": str(d)}
                rows.append(_attempt(row, lambda d=d: evaluate_run(d, None)))
                bar.update(k)
                bar.note(f"compare [{k}/{len(run_dirs)}] {row['variant']}: {row['status']}")
    else:
        cfg, base, base_overrides = load_compare(config, args)
        if seeds is not None:
            cfg = cfg.model_copy(update={"seeds": parse_seeds(seeds)})
        name = cfg.name
        planned = variant_configs(cfg, base, base_overrides, sweeps)
        groups = _groups(planned, root)
        record.update(seeds=cfg.seeds, base=str(base))
        results: dict[tuple, dict] = {}
        n = len(planned)
        with progress.Bar("compare", n, unit="run") as bar:
            def report(_i, group_results):
                for res in group_results:
                    results[(res["variant"], res["seed"])] = res
                    for event in res.pop("events", []):
                        bar.note(f"compare [{len(results)}/{n}] {res['variant']} seed {res['seed']}: {event}")
                bar.update(len(results))

            if launcher == "ray":
                launch.run_ray(groups, jobs, ray_address, report)
            else:
                launch.run_local(groups, jobs, report)
        rows = []
        for variant, seed, _ in planned:
            res = results[(variant, seed)]
            rows.append(_clean({"variant": variant, "seed": seed, **{k: v for k, v in res.items() if k not in ("variant", "seed")}}))
    out_dir = runs.allocate(root, f"compare-{name}")
    table = aggregate(rows)
    record["wall_s"] = round(time.perf_counter() - t_start, 3)
    runs.write_json(out_dir / "comparison.json", {"name": name, "config": str(config) if config else None, **record,
                                                  "variants": table, "runs": rows})
    runs.write_text(out_dir / "comparison.md", markdown(table, f"compare-{name}", record))
    try:
        figures(out_dir, rows, cfg.against if config else None)
    except Exception as e:  # figures are a courtesy: never lose the table over them
        from dsmcli import console

        console.warn(f"comparison figures failed: {type(e).__name__}: {e}")
    print_table(table, f"compare-{name}")
    return out_dir, table


def _attempt(row: dict, fn) -> dict:
    """Run one existing run's evaluation; a failure becomes the row's status and reason."""
    import traceback

    try:
        row["metrics"] = fn()
        row["status"] = "completed"
    except Exception as e:  # keep going: the failure is reported in the table
        row["status"] = "failed"
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["metrics"] = {}
        if not isinstance(e, (UserError,)):
            row["traceback"] = traceback.format_exc(limit=5)
    return _clean(row)


def _clean(row: dict) -> dict:
    row.setdefault("metrics", {})
    for k, v in list(row["metrics"].items()):
        if isinstance(v, float) and not math.isfinite(v):
            row["metrics"][k] = None
    return row
