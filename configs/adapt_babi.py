"""Adapt an English-pretrained model to bAbI (synthetic, all 20 tasks) with self-generated replay + KL.

  python -m cpt_jax.train --config configs/pretrain_tiny.py --workdir runs/tiny
  python -m cpt_jax.train --config configs/adapt_babi.py --workdir runs/babi --config.init_from=runs/tiny

The architecture and tokenizer come from `init_from`. Replay samples are drawn on the fly from the frozen
start model (BOS prompt, temperature 1, full context), never reused.
"""

from cpt_jax.config import default_config


def get_config():
  c = default_config()
  c.stage, c.init_from = "adapt", "runs/tiny"
  c.data.batch_size = 16
  c.data.target.kind, c.data.target.name = "babi", "babi_synthetic"
  c.data.target.babi_mode, c.data.target.babi_stories = "synthetic", 200
  c.replay.ratio, c.replay.kind, c.replay.loss, c.replay.coeff = 0.25, "self", "kl", 3.0
  c.replay.semantics = "regularizer"  # KL to the teacher: target mean + λ·replay mean (Marek et al.)
  c.replay.chunk_sequences = 256
  c.opt.lr, c.opt.warmup_tokens, c.opt.b2_halflife_tokens = 1e-3, 20_000, 1_000_000
  c.train.total_tokens = 500_000
  c.train.eval_every_tokens = 100_000
  c.train.babi_eval_examples = 400
  return c
