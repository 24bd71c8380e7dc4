"""Pretrain a ~3M-parameter GPT-2 on the English public-domain corpus, on 2 CPU cores in a few minutes."""

from cpt_jax.config import default_config


def get_config():
  c = default_config()
  c.model.num_layers = 4
  c.model.d_model = 192
  c.model.num_heads = 6
  c.model.max_len = 128
  c.data.vocab_size = 4096
  c.data.batch_size = 32
  c.opt.lr = 3e-3
  c.opt.warmup_tokens = 100_000
  c.opt.b2_halflife_tokens = 1_000_000  # β₂ from a half-life in tokens (Marek et al.)
  c.train.total_tokens = 1_000_000
  c.train.eval_every_tokens = 250_000
  c.train.checkpoint_every_tokens = 500_000
  return c
