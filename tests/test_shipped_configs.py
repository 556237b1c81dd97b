"""Every config shipped in configs/ validates (compare configs: every variant × seed), and the
image and ratings experiments run end to end from the command line at a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dsmcli.cli import app
from dsmcli.compare import load_compare, variant_configs
from dsmcli.config import load_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))


def is_compare(path: Path) -> bool:
    raw = yaml.safe_load(path.read_text())
    return isinstance(raw, dict) and "variants" in raw


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(CONFIGS)) for p in ALL])
def test_shipped_config_validates(path):
    if is_compare(path):
        cfg, base, _ = load_compare(path)
        assert len(variant_configs(cfg, base, [])) == len(cfg.variants) * len(cfg.seeds)
    else:
        assert load_experiment(path).name


SMOKE = ["digits/ncsn.yaml", "digits/vae.yaml", "digits/autoencoder.yaml", "ratings/autorec.yaml"]


@pytest.mark.parametrize("name", SMOKE)
def test_shipped_image_and_ratings_configs_run_at_a_few_steps(name, tmp_path):
    short = ["train.steps=4", "train.log_every=2", "train.eval_every=4", "train.ckpt_every=4", "train.batch_size=16"]
    if name == "digits/ncsn.yaml":
        short.append("model={kind: ncsn_conv, channels: [8, 16]}")  # the shipped network, narrower
    out = CliRunner().invoke(app, ["train", "--config", str(CONFIGS / name), "--runs-dir", str(tmp_path), *short])
    assert out.exit_code == 0, out.output
    run_dir = Path(out.output.strip().splitlines()[-1])
    assert (run_dir / "summary.json").is_file() and "completed" in (run_dir / "summary.json").read_text()
