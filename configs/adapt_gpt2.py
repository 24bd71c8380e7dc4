"""Adapt an imported Hugging Face GPT-2 to a target corpus, with replay and KL to the frozen start model.

Full (one GPU, or a TPU v4-8 through launch_tpu.sh unchanged): GPT-2 124M, bf16, FineWeb-Edu replay.

  python -m cpt_jax.hf import --model openai-community/gpt2 --workdir gs://BUCKET/gpt2      # or a local dir
  python -m cpt_jax.train --config configs/adapt_gpt2.py --workdir gs://BUCKET/gpt2_es \\
      --config.init_from=gs://BUCKET/gpt2 --config.data.target.path='/data/es/{split}_*.txt'
  python -m cpt_jax.hf export --workdir gs://BUCKET/gpt2_es --out gpt2_es_hf          # GPT2LMHeadModel

Tiny (CPU, ≤ 2 minutes, on the test fixture: a 2-layer random GPT-2 with its tokenizer.json):

  python -m cpt_jax.hf import --model tests/fixtures/hf_gpt2_tiny --workdir runs/gpt2_tiny
  python -m cpt_jax.train --config configs/adapt_gpt2.py:tiny --workdir runs/gpt2_tiny_babi

Replay is self-generated (sampled from the frozen start model, starting at its BOS, `<|endoftext|>` for
GPT-2) with KL(teacher‖student) as a regularizer; for real replay set `replay.kind=real`, which reads
`data.base` (FineWeb-Edu sample-10BT in the full variant, prepared once into ArrayRecord: README).
"""

from cpt_jax.config import default_config


def get_config(variant: str = "full"):
  c = default_config()
  c.stage = "adapt"
  c.replay.ratio, c.replay.kind, c.replay.loss, c.replay.coeff = 0.25, "self", "kl", 1.0
  c.replay.semantics = "regularizer"  # KL to the teacher: target mean + λ·replay mean (Marek et al.)
  if variant == "tiny":
    c.init_from = "runs/gpt2_tiny"
    c.data.base.kind, c.data.base.path = "files", "tests/fixtures/hf_gpt2_tiny/corpus.txt"
    c.data.target.kind, c.data.target.name = "babi", "babi_synthetic"
    c.data.target.babi_stories, c.data.target.babi_tasks = 20, "1,2"
    c.data.batch_size = 8
    c.replay.chunk_sequences = 16
    c.opt.lr, c.opt.warmup_tokens = 1e-3, 0
    c.train.total_tokens = 8 * 64 * 20
    c.train.eval_every_tokens = 8 * 64 * 10
    c.train.eval_rows = 8
    c.train.babi_eval_examples = 16
  elif variant == "full":
    c.init_from = "gs://BUCKET/gpt2"
    c.model.compute_dtype, c.replay.teacher_dtype = "bfloat16", "bfloat16"
    c.data.base.kind, c.data.base.name = "hf", "HuggingFaceFW/fineweb-edu:sample-10BT"
    c.data.target.kind, c.data.target.path = "files", "/data/target/{split}_*.txt"
    c.data.batch_size = 32  # × 1024 tokens per step
    c.replay.chunk_sequences = 64
    c.opt.lr, c.opt.warmup_tokens, c.opt.b2_halflife_tokens = 1e-4, 2_000_000, 10_000_000
    c.train.total_tokens = 200_000_000
    c.train.eval_every_tokens = 10_000_000
    c.train.checkpoint_every_tokens = 20_000_000
  else:
    raise ValueError(f"configs/adapt_gpt2.py:{variant}: variants are full and tiny")
  return c
