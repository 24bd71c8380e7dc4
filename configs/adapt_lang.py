"""Adapt an English-pretrained model to Spanish (seed 001's language setting): Reina-Valera 1909 and
Spanish fortunes from Debian packages; real English replay with KL to the frozen start model.

  python -m cpt_jax.train --config configs/adapt_lang.py --workdir runs/es --config.init_from=runs/tiny

Switch to self-generated replay with --config.replay.kind=self (no English data needed).
"""

from cpt_jax.config import default_config


def get_config():
  c = default_config()
  c.stage, c.init_from = "adapt", "runs/tiny"
  c.data.batch_size = 16
  c.data.target.kind, c.data.target.name = "corpus", "spanish"
  c.replay.ratio, c.replay.kind, c.replay.loss, c.replay.coeff = 0.25, "real", "kl", 3.0
  c.replay.semantics = "regularizer"  # KL to the teacher: target mean + λ·replay mean (Marek et al.)
  c.opt.lr, c.opt.warmup_tokens, c.opt.b2_halflife_tokens = 1e-3, 20_000, 1_000_000
  c.train.total_tokens = 1_000_000
  c.train.eval_every_tokens = 250_000
  return c
