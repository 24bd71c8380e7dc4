"""Shared fixtures: a small synthetic-English corpus on disk and a tiny model config, made once per session."""

from __future__ import annotations

import importlib.util
import os
import random
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The trainer's compilation cache (cpt_jax/compile_cache.py) in a temporary directory, never the user's.
os.environ["CPT_JAX_COMPILE_CACHE"] = os.path.join(tempfile.gettempdir(), "cpt_jax_test_jit_cache")

_SUBJECTS = "the old king|a young girl|my brother|the farmer|her mother|the small dog|a tired soldier".split("|")
_VERBS = "saw|loved|followed|found|called|helped|watched|feared".split("|")
_OBJECTS = "the river|a white horse|the castle|his friend|the green field|a quiet town|the sea".split("|")
_TAILS = "at dawn|in the rain|before supper|with great care|without a word|as the bells rang".split("|")


def synthetic_document(rng: random.Random, sentences: int) -> str:
  out = []
  for _ in range(sentences):
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
    out.append(s[0].upper() + s[1:])
  return " ".join(out)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
  """train/validation .txt documents of a grammar-generated corpus (learnable, no downloads)."""
  d = tmp_path_factory.mktemp("corpus")
  rng = random.Random(0)
  for split, n in (("train", 150), ("validation", 12)):
    for i in range(n):
      (d / f"{split}_{i:03d}.txt").write_text(synthetic_document(rng, 40))
  return d


def tiny_config():
  spec = importlib.util.spec_from_file_location("tiny_config", Path(__file__).parent / "configs" / "tiny.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


@pytest.fixture(scope="session")
def tiny_config_factory(corpus_dir, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("data")

  def make(**overrides):
    c = tiny_config()  # tests/configs/tiny.py: the same sizes for in-process and CLI tests
    c.data.base.path = str(corpus_dir / "{split}_*.txt")
    c.data.data_dir = str(data_dir)
    c.data.tokenizer = ""
    for key, value in overrides.items():
      node = c
      *parents, leaf = key.split(".")
      for p in parents:
        node = node[p]
      node[leaf] = value
    return c

  return make


@pytest.fixture(scope="session")
def pretrained(tiny_config_factory, tmp_path_factory):
  """(workdir, summary) of one uninterrupted tiny pretraining run, shared by the train and adapt tests."""
  from cpt_jax import loop
  workdir = tmp_path_factory.mktemp("pretrained")
  summary = loop.run(tiny_config_factory(), str(workdir))
  return workdir, summary
