"""The GPT-2 family (Radford et al. 2019) at its published sizes, for pretraining or for adapting a run of it.

  python -m cpt_jax.train --config configs/gpt2.py:124m --workdir W --config.data.tokenizer=PATH
  python -m cpt_jax.train --config configs/gpt2.py:124m,adapt --workdir W2 --config.init_from=W

Sizes (tied head, context 1024, vocabulary 50257 padded to 50304 for the matmuls; the padding never reaches
loss, sampling or export): 124m = 12 × 768 (12 heads), 355m = 24 × 1024 (16), 774m = 36 × 1280 (20),
1.5b = 48 × 1600 (25). tests/test_gpt2_configs.py checks the parameter counts against the published ones.

The model's vocabulary is the tokenizer's: give a 50257-entry one (data.tokenizer), or data.vocab_size
sets the size of the one trained from data.base. Accelerator settings: bf16 matmuls, the blocks under a
scan (compile time independent of depth), remat growing with size (activation memory at 8 rows of 1024
per device; none of these settings was measured on an accelerator here). On a CPU, pass
--config.model.compute_dtype=float32 (faster there) and a small data.batch_size.
"""

from cpt_jax.config import default_config

# layers, width, heads, peak LR (GPT-3's for these widths), remat policy
SIZES = {
    "124m": (12, 768, 12, 6e-4, "none"),
    "355m": (24, 1024, 16, 3e-4, "none"),
    "774m": (36, 1280, 20, 2.5e-4, "dots_saveable"),
    "1.5b": (48, 1600, 25, 2e-4, "full"),
}


def get_config(arg: str = "124m"):
  size, _, stage = arg.partition(",")
  if size not in SIZES or stage not in ("", "pretrain", "adapt"):
    raise ValueError(f"configs/gpt2.py:{arg}: use SIZE or SIZE,adapt with SIZE one of {sorted(SIZES)}")
  layers, width, heads, lr, remat = SIZES[size]
  c = default_config()
  c.model.num_layers, c.model.d_model, c.model.num_heads = layers, width, heads
  c.model.max_len, c.model.mlp_ratio, c.model.tie_embeddings = 1024, 4, True
  c.model.vocab_multiple = 128
  c.model.compute_dtype, c.model.scan_layers, c.model.remat = "bfloat16", True, remat
  c.data.vocab_size = 50257
  c.data.batch_size = 256  # 262k tokens per step
  c.opt.lr, c.opt.weight_decay, c.opt.clip_norm = lr, 0.1, 1.0
  c.opt.b1, c.opt.b2 = 0.9, 0.95
  c.opt.schedule, c.opt.min_lr_ratio = "cosine", 0.1
  c.train.eval_rows = 256
  c.train.log_every_steps = 10
  if stage == "adapt":  # the architecture comes from init_from; self-generated replay with KL (Marek et al.)
    c.stage = "adapt"
    c.data.target.kind, c.data.target.name = "babi", "babi_synthetic"
    c.replay.ratio, c.replay.kind, c.replay.loss, c.replay.coeff = 0.25, "self", "kl", 1.0
    c.replay.semantics = "regularizer"
    c.replay.teacher_dtype = "bfloat16"
    c.opt.lr, c.opt.warmup_tokens = lr / 3, 10_000_000
    c.train.total_tokens = 500_000_000
    c.train.eval_every_tokens = 50_000_000
    c.train.checkpoint_every_tokens = 50_000_000
  else:
    c.opt.warmup_tokens = 375_000_000  # GPT-3's warmup
    c.train.ptpp = 20.0  # Chinchilla: 20 tokens per parameter
    c.train.eval_every_tokens = 250_000_000
    c.train.checkpoint_every_tokens = 250_000_000
  return c
