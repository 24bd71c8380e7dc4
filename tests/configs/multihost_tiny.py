"""Tiny config for the multi-process tests (the sizes of tests/conftest.py's factory).

The corpus comes from the environment: CPT_JAX_TEST_CORPUS is a glob with {split} (e.g. DIR/{split}_*.txt),
CPT_JAX_TEST_DATA a data dir,
CPT_JAX_TEST_TOKENIZER a SentencePiece model (empty: trained from the corpus); all are set by tests/test_multihost.py.
"""

import os

from cpt_jax.config import default_config


def get_config():
  c = default_config()
  c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.max_len = 2, 64, 4, 32
  c.data.base.kind = "files"
  c.data.base.path = os.environ.get("CPT_JAX_TEST_CORPUS", "")
  c.data.data_dir = os.environ.get("CPT_JAX_TEST_DATA", "")
  c.data.tokenizer = os.environ.get("CPT_JAX_TEST_TOKENIZER", "")
  c.data.vocab_size = 400
  c.data.batch_size = 8
  c.opt.warmup_tokens = 256
  c.opt.lr = 1e-2
  c.train.total_tokens = 8 * 32 * 6
  c.train.eval_every_tokens = 8 * 32 * 3
  c.train.checkpoint_every_tokens = 8 * 32 * 4
  c.train.eval_rows = 8
  c.train.log_every_steps = 1
  c.train.progress = False
  return c
