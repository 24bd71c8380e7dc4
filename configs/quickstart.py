"""Quickstart study: pretrain a tiny GPT-2 on English → sample self-replay → adapt on bAbI three ways →
table and plot of forgetting vs target loss and bAbI accuracy. ≤ 25 min on 2 CPU cores.

  python -m cpt_jax.study --config configs/quickstart.py --workdir runs/quickstart
"""

import ml_collections

from cpt_jax.config import default_config


def pretrain_config():
  c = default_config()
  c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.max_len = 4, 192, 6, 128
  c.data.vocab_size, c.data.batch_size = 2048, 16
  c.opt.lr, c.opt.warmup_tokens, c.opt.b2_halflife_tokens = 3e-3, 50_000, 1_000_000
  c.train.eval_every_tokens = 250_000
  c.train.checkpoint_every_tokens = 500_000
  return c


def adapt_config():
  c = pretrain_config()
  c.stage = "adapt"
  c.data.target.kind, c.data.target.name = "babi", "babi_synthetic"
  c.data.target.babi_mode, c.data.target.babi_stories, c.data.target.babi_tasks = "synthetic", 100, "all"
  c.opt.lr, c.opt.warmup_tokens, c.opt.schedule = 2e-3, 20_000, "cosine"
  c.train.total_tokens = 400_000
  c.train.eval_every_tokens = 100_000
  c.train.checkpoint_every_tokens = 200_000
  c.train.babi_eval_examples = 200
  return c


def get_config():
  s = ml_collections.ConfigDict()
  s.pretrain = pretrain_config()
  s.adapt = adapt_config()
  s.sizes = {"tiny": {}}
  # the tiny model has ~2.2M parameters: PTPP 0.45 ≈ 1M pretraining tokens
  s.ptpp = [0.45]
  s.replay_tokens = 100_000  # ≥ the 400k × 0.25 replay tokens the self_kl cell uses: no sample is reused
  s.axes = [("method", [
      ("no_replay", {}),
      ("real_ntp", {"replay.ratio": 0.25, "replay.kind": "real", "replay.loss": "ntp", "replay.coeff": 1.0,
                    "replay.semantics": "mixture"}),
      ("self_kl", {"replay.ratio": 0.25, "replay.kind": "self", "replay.loss": "kl", "replay.coeff": 1.0,
                   "replay.semantics": "regularizer",
                   "replay.samples": "@generated"}),
  ])]
  s.report = "quickstart"
  return s
