"""The tiny config of tests/conftest.py's factory, as a file for tests that go through the CLI.

Data comes from the command line (`--config.data.base.path=DIR/{split}_*.txt`, `--config.data.data_dir=...`)
or from CPT_JAX_TEST_CORPUS / CPT_JAX_TEST_DATA / CPT_JAX_TEST_TOKENIZER.
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
  c.opt.warmup_tokens = 1024
  c.opt.lr = 1e-2
  c.train.total_tokens = 8 * 32 * 20
  c.train.eval_every_tokens = 8 * 32 * 4
  c.train.checkpoint_every_tokens = 8 * 32 * 4
  c.train.eval_rows = 8
  c.train.progress = False
  return c
