"""Tiny config for the multi-process tests (the sizes of tests/conftest.py's factory).

The corpus comes from the environment: CPT_JAX_TEST_CORPUS is a glob with {split} (e.g. DIR/{split}_*.txt),
CPT_JAX_TEST_DATA a data dir,
CPT_JAX_TEST_TOKENIZER a SentencePiece model (empty: trained from the corpus); all are set by tests/test_multihost.py.
"""

import importlib.util
import os


def _tiny():
  spec = importlib.util.spec_from_file_location("tiny", os.path.join(os.path.dirname(__file__), "tiny.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def get_config():
  c = _tiny()
  c.opt.warmup_tokens = 256
  c.train.total_tokens = 8 * 32 * 6
  c.train.eval_every_tokens = 8 * 32 * 3
  c.train.log_every_steps = 1
  return c
