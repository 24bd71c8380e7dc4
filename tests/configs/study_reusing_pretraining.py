"""The quickstart study told to start from an existing pretraining run that does not exist (CLI tests)."""

import importlib.util
from pathlib import Path

MAKE_PRETRAIN = "python -m cpt_jax.train --config configs/pretrain_tiny.py --workdir runs/pretrain_missing"


def get_config():
  path = Path(__file__).resolve().parents[2] / "configs" / "quickstart.py"
  spec = importlib.util.spec_from_file_location("quickstart", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  s = mod.get_config()
  s.pretrained = {"tiny": "runs/pretrain_missing"}
  s.pretrained_command = {"tiny": MAKE_PRETRAIN}
  return s
