"""Config loading: YAML quirks, overrides, and the exact wording of every kind of error."""

from __future__ import annotations

import pytest

from dsmcli import config
from dsmcli.errors import UserError
from tests.conftest import write_config


def error_of(raw_or_path, overrides=None) -> str:
    with pytest.raises(UserError) as e:
        if isinstance(raw_or_path, dict):
            config.validate(raw_or_path, "cfg.yaml")
        else:
            config.load_experiment(raw_or_path, overrides or [])
    return str(e.value)


def base(**changes):
    raw = {"name": "t", "data": {"kind": "gmm", "means": [[0, 0], [1, 1]]}, "objective": {"kind": "dsm"}}
    raw.update(changes)
    return raw


def test_defaults_fill_every_section_but_data_and_objective():
    cfg = config.validate(base(), "x")
    assert cfg.model.kind == "mlp" and cfg.model.hidden == [128, 128]
    assert cfg.optim.kind == "adam" and cfg.optim.lr == 1e-3
    assert cfg.train.steps == 5000 and cfg.sample.kind == "langevin" and cfg.sample.init.kind == "uniform"
    with pytest.raises(Exception):
        cfg.seed = 3  # frozen


def test_yaml_scientific_notation_without_dot_is_a_float():
    assert config.parse_yaml("lr: 1e-3\nn: 1e4\nk: 10", "x") == {"lr": 0.001, "n": 10000.0, "k": 10}


def test_file_stem_is_default_name(tmp_path):
    path = write_config(tmp_path / "my-exp.yaml")
    assert config.load_experiment(path).name == "my-exp"
    assert config.load_experiment(path, name="other").name == "other"


def test_overrides_are_yaml_and_mappings_replace_subtrees(tiny_config):
    cfg = config.load_experiment(
        tiny_config, ["optim.lr=1e-3", "model.hidden=[8, 4]", "objective={kind: oracle}", "train.steps=7"]
    )
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)
    assert cfg.model.hidden == [8, 4]
    assert cfg.objective.kind == "oracle" and cfg.objective.sigma == 0.0  # base's sigma=0.3 dropped
    assert cfg.train.steps == 7


def test_resolved_config_reproduces_itself(tiny_config, tmp_path):
    cfg = config.load_experiment(tiny_config, ["objective.sigma=0.05"])
    again = tmp_path / "resolved.yaml"
    again.write_text(config.dump_yaml(cfg.to_dict()))
    assert config.load_experiment(again) == cfg


def test_unknown_key_suggests_nearest(tiny_config):
    msg = error_of(tiny_config, ["objective.sigmaa=0.1"])
    assert "objective.sigmaa: unknown key; did you mean 'objective.sigma'?" in msg
    assert "allowed keys here: kind, sigma" in msg
    assert "trian: unknown key; did you mean 'train'?" in error_of(base(trian={}))


def test_unknown_kind_lists_allowed_values():
    msg = error_of(base(data={"kind": "gmn", "means": [[0]]}))
    assert "data.kind: unknown kind 'gmn'; did you mean 'gmm'?" in msg
    assert "(allowed: gmm, rings, moons, spiral, checkerboard, digits, mnist, cifar10, images, npz, ratings)" in msg
    msg = error_of(base(optim={"kind": "adm"}))
    assert "optim.kind: 'adm' is not allowed; did you mean 'adam'? (allowed: adam, adamw, sgd)" in msg
    assert "sample.kind: 'langevn' is not allowed; did you mean 'langevin'?" in error_of(base(sample={"kind": "langevn"}))


def test_wrong_types_and_ranges_name_the_path_and_value():
    msg = error_of(base(objective={"kind": "dsm", "sigma": -1}, train={"batch_size": 0}, model={"hidden": [8, "a"]}))
    assert "objective.sigma: must be between 1e-18 and 1e+18 (σ² and 1/σ² are computed in float32) (got -1)" in msg
    assert "train.batch_size: Input should be greater than 0 (got 0)" in msg
    assert "model.hidden.1: Input should be a valid integer" in msg


def test_noise_scales_must_keep_their_square_a_normal_float32():
    """σ enters the losses as σ², 1/σ², which under- or overflow in float32 outside ≈ [1e-19, 1e19]
    (the config fuzzer found σ = 2.2e-309 validating, then diverging at step 1)."""
    msg = error_of(base(objective={"kind": "dsm", "sigma": 2.2e-309}))
    assert "objective.sigma: must be between 1e-18 and 1e+18" in msg and "(got 2.2e-309)" in msg
    assert "objective.sigma_max: must be between 1e-18 and 1e+18" in error_of(
        base(objective={"kind": "ncsn", "sigma_max": 1e19}))
    assert "sample.sigma_min: must be between" in error_of(base(sample={"sigma_min": 1e-20}))
    assert "objective.decoder_std: must be between" in error_of(base(objective={"kind": "vae", "decoder_std": 0}))


def test_cross_field_rules():
    assert "'weights' must be positive and sum to 1 (they sum to 0.5)" in error_of(
        base(data={"kind": "gmm", "means": [[0], [1]], "weights": [0.25, 0.25]})
    )
    assert "'stds' has 1 entries but there are 2 means" in error_of(base(data={"kind": "gmm", "means": [[0], [1]], "stds": [1]}))
    assert "'covs' must have shape (2, 1, 1)" in error_of(base(data={"kind": "gmm", "means": [[0], [1]], "covs": [[[1]]]}))
    assert "'eval_every' (1000) must be a multiple of 'log_every' (30)" in error_of(base(train={"log_every": 30}))
    assert "'low' (3.0) must be < 'high' (1.0)" in error_of(base(sample={"init": {"kind": "uniform", "low": 3, "high": 1}}))


def test_missing_sections_and_files(tmp_path):
    assert "objective: required but missing" in error_of({"name": "t", "data": {"kind": "gmm", "means": [[0]]}})
    assert "data.kind: missing 'kind' (allowed: gmm," in error_of(base(data={"means": [[0]]}))
    assert "--config: file 'nope.yaml' does not exist" in error_of("nope.yaml")


def test_malformed_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: {kind: gmm\nobjective: [\n")
    assert "malformed YAML at line" in error_of(str(p))


def test_bad_override_syntax(tiny_config):
    assert "expected KEY=VALUE" in error_of(tiny_config, ["optim.lr"])
    assert "'optim.lr' is not a section" in error_of(tiny_config, ["optim.lr.x=1"])


def test_nan_and_inf_are_rejected_everywhere():
    msg = error_of(base(data={"kind": "gmm", "means": [[0, 0]], "stds": [float("nan")]},
                        optim={"lr": float("inf")}))
    assert "data.stds" in msg and "optim.lr" in msg and "finite number" in msg


def test_a_kind_that_is_not_a_string_is_a_clear_error():
    """Found by the config fuzzer: ``data.kind: []`` once raised TypeError (unhashable) while the
    default network was being chosen."""
    for section in ("data", "objective"):
        raw = {"name": "t", "data": {"kind": "digits"}, "objective": {"kind": "ncsn"}}
        raw[section] = {"kind": []}
        with pytest.raises(UserError, match=f"{section}.kind"):
            config.validate(raw, "t")
