"""Every shipped config loads and validates (adapt configs with a stand-in init_from)."""

import importlib.util
from pathlib import Path

import ml_collections
import pytest

from cpt_jax import config as config_lib

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").glob("*.py")
                 if p.name not in ("from_json.py", "study_common.py"))  # study_common: helpers of the studies


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


STUDIES = [p for p in CONFIGS if p.stem.startswith("study_") and p.stem != "study_common"]


@pytest.mark.parametrize("scale", ["small", "full"])
@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_expands_to_valid_runs(path, scale, tmp_path):
  """Every cell of every shipped study, at both scales, is a valid run with its size's overrides applied."""
  from cpt_jax import study_grid  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(path.stem, path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  s = mod.get_config(scale)
  if s.get("pretrained"):  # small scales reuse a local pretraining run (runs/…): pretrain in the study instead
    with s.unlocked():
      s.pretrained = {}
  cells = study_grid.expand(s, tmp_path / "study")
  runs = [c for c in cells if c.kind in ("pretrain", "adapt") and c.config]
  assert {c.kind for c in runs} == {"pretrain", "adapt"}
  sizes = dict(s.sizes.items() if hasattr(s.sizes, "items") else s.sizes)
  for c in runs:
    run = ml_collections.ConfigDict(c.config)
    if run.stage == "adapt":
      run.init_from = str(tmp_path)
    config_lib.validate(run, num_devices=1)
    for key, value in dict(sizes[c.labels["size"]]).items():  # the size's overrides reached every run
      node = run
      for part in key.split("."):
        node = node[part]
      assert node == value, (c.id, key)
  if (path.stem, scale) == ("study_forgetting", "full"):  # the paper's capacity slice: a 6×384 model
    assert {(r["model"]["num_layers"], r["model"]["d_model"]) for r in (c.config for c in runs)} == {(6, 384)}
