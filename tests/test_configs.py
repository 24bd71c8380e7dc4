"""Every shipped config loads and validates (adapt configs with a stand-in init_from)."""

import importlib.util
from pathlib import Path

import pytest

from cpt_jax import config as config_lib

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").glob("*.py") if p.name != "from_json.py")


def _load(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path, tmp_path):
  cfg = _load(path)
  runs = [cfg.pretrain, cfg.adapt] if "pretrain" in cfg else [cfg]  # studies hold two run configs
  for run in runs:
    if run.stage == "adapt":
      run.init_from = str(tmp_path)
    config_lib.validate(run, num_devices=1)


def test_validation_names_the_field():
  c = config_lib.default_config()
  c.replay.ratio = 1.5
  with pytest.raises(config_lib.ConfigError, match=r"replay\.ratio=1\.5: must be in \[0, 0\.9\]"):
    config_lib.validate(c, 1)
  c = config_lib.default_config()
  c.data.batch_size = 30
  with pytest.raises(config_lib.ConfigError, match=r"data\.batch_size=30: must be divisible by the data axes .* = 4"):
    config_lib.validate(c, 4)
