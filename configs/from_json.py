"""A config saved as JSON (e.g. a study cell's): `--config configs/from_json.py:PATH/config.json`."""

import json

from cpt_jax.config import default_config

def get_config(path: str):
  c = default_config()
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  c.update_from_flattened_dict(_flatten(saved))  # unknown or ill-typed fields are rejected here
  return c

def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
