"""Shared pieces of the three seed studies (configs/study_babi.py, study_forgetting.py, study_ptpp.py).

Small (CPU) scale: GPT-2s small enough to be pretrained *to* the papers' tokens-per-parameter ratios on 2 CPU
cores without repeating the English corpus more than 4 times: 2 layers, context 128, a 512-token vocabulary
(11.2M tokens of English at 0.51 tokens per character, measured), widths 32-64 (46k-139k parameters). Each
stage is its own pretraining run with its own schedule (`pretrain_per_stage`), as a model trained to that
ratio would be; each study pretrains what it needs.

Full (GPU/TPU) scale: `pretrain_config("full")`, a ~111M-parameter GPT-2 (12 layers, d=768, T=1024,
vocab 32k, batch 256), pretrained on FineWeb-Edu (sample-100BT: 100B tokens, so that no run of any full study
reads it more than 4 times; `python -m cpt_jax.study --config configs/study_X.py:full --workdir W --status`
prints each run's epochs and device-hours). The large corpora are `hf` sources read from local Parquet
downloads under $CPT_JAX_CORPORA (default /data/corpora), prepared once into ArrayRecord on first use:

  huggingface-cli download HuggingFaceFW/fineweb-edu --repo-type dataset --include "sample/100BT/*" \
      --local-dir $CPT_JAX_CORPORA/fineweb-edu       # ~100B tokens; the English base (and real replay)
  huggingface-cli download wikimedia/wikipedia --repo-type dataset --include "20231101.es/*" \
      --local-dir $CPT_JAX_CORPORA/wikipedia         # Spanish Wikipedia; the Spanish target of two studies

(A hub name alone would stream the dataset instead, with `max_documents` capping how much of it is written;
a full study reads most of sample-100BT, so a local copy is the practical choice. Either way FineWeb-Edu has no
validation split, and every 1000th document is held out for validation.)
"""

import os

import ml_collections

from cpt_jax.config import default_config

# small-scale model sizes: width → overrides (2 layers, head dim 16)
SMALL_SIZES = {f"d{d}": {"model.d_model": d, "model.num_heads": d // 16} for d in (32, 48, 64)}

# full-scale corpora: name → (hub dataset, its files under CPT_JAX_CORPORA, train tokens). The sizes feed the
# study's epoch check (cpt_jax/study_cost.py) before anything is downloaded. FineWeb-Edu sample-100BT: 100B GPT-2
# tokens (its card); a 32k SentencePiece trained on it gives about as many, a 4k one more, so the stated size
# errs low (epochs high). Spanish Wikipedia (1.8M articles, several G characters): ≥ 1B tokens with a tokenizer
# trained on English (≥ 0.4 tokens per Spanish character, measured at vocab ≤ 2048 on the local corpus) —
# a conservative estimate, not a count.
FULL_CORPORA_DIR = os.environ.get("CPT_JAX_CORPORA", "/data/corpora")
FULL_CORPORA = {
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu:sample-100BT", "fineweb-edu/sample/100BT", 100e9),
    "wikipedia-es": ("wikimedia/wikipedia:20231101.es", "wikipedia/20231101.es", 1e9),
}


def full_source(source: ml_collections.ConfigDict, corpus: str) -> None:
  """Sets a source config (data.base / data.target) to one of FULL_CORPORA, its size stated."""
  name, files, tokens = FULL_CORPORA[corpus]
  source.kind, source.name, source.path = "hf", name, os.path.join(FULL_CORPORA_DIR, files)
  source.text_field, source.size_tokens = "text", tokens


def pretrain_config(scale: str = "small") -> ml_collections.ConfigDict:
  c = default_config()
  if scale == "small":
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.max_len = 2, 32, 2, 128
    c.data.vocab_size, c.data.batch_size = 512, 32
    c.opt.lr, c.opt.warmup_tokens, c.opt.b2_halflife_tokens = 3e-3, 200_000, 1_000_000
    c.train.eval_every_tokens = 250_000  # a dense validation curve: the compute multiplier reads it
    c.train.checkpoint_every_tokens = 2_000_000
    c.train.eval_rows = 256
  elif scale == "full":
    c.model.num_layers, c.model.d_model, c.model.num_heads, c.model.max_len = 12, 768, 12, 1024
    c.model.compute_dtype = "bfloat16"
    c.data.vocab_size, c.data.batch_size = 32_768, 256
    c.opt.lr, c.opt.warmup_tokens, c.opt.b2_halflife_tokens = 1e-3, 50_000_000, 10_000_000
    c.train.eval_every_tokens = 200_000_000
    c.train.checkpoint_every_tokens = 500_000_000
    c.train.eval_rows = 512
    full_source(c.data.base, "fineweb-edu")
  else:
    raise ValueError(f"scale must be small or full, not {scale!r}")
  return c


def adapt_base(scale: str = "small") -> ml_collections.ConfigDict:
  """The adapt stage common to the studies: fresh cosine schedule, evals at the end."""
  c = pretrain_config(scale)
  c.stage = "adapt"
  if scale == "small":
    c.opt.lr, c.opt.warmup_tokens, c.opt.schedule = 1e-3, 20_000, "cosine"
    c.train.eval_every_tokens = 100_000_000  # only the before/after evals
    c.train.checkpoint_every_tokens = 1_000_000
  else:
    c.opt.lr, c.opt.warmup_tokens, c.opt.schedule = 3e-4, 10_000_000, "cosine"
    c.train.eval_every_tokens = 1_000_000_000
    c.train.checkpoint_every_tokens = 500_000_000
  return c


def new_study(scale: str, target_kind: str, target_name: str):
  """(study, adapt config): the study's pretrain config, one size, one pretraining run per stage, 3 seeds."""
  s = ml_collections.ConfigDict()
  s.pretrain = pretrain_config(scale)
  s.sizes = [(scale, {})]
  s.pretrain_per_stage = True
  s.seeds = [0, 1, 2]
  if scale == "small":  # what a small study is sized for: 2 CPU cores, ≤ 6 h of wall time over its invocations
    s.wall_hours_budget = 6.0
  a = adapt_base(scale)
  a.data.target.kind, a.data.target.name = target_kind, target_name
  return s, a


def replay(ratio: float, kind: str = "real", loss: str = "ntp", coeff: float = 1.0,
           semantics: str = "mixture") -> dict:
  """Overrides of one replay setting (none for ratio 0); kind "self" reads the study's generated samples.

  mixture (replay is training data, one token-mean) is what the bAbI and PTPP papers mean by a replay
  ratio; the forgetting study uses Marek et al.'s regularizer (target mean + λ·replay mean)."""
  if not ratio:
    return {}
  ov = {"replay.ratio": ratio, "replay.kind": kind, "replay.loss": loss, "replay.coeff": coeff,
        "replay.semantics": semantics}
  if kind == "self":
    ov["replay.samples"] = "@generated"
  return ov


def replay_axis(ratios) -> list:
  """[("r12p5", overrides of 12.5 % real NTP replay), ...]"""
  return [(f"r{r * 100:g}".replace(".", "p"), replay(r)) for r in ratios]


def tokens_label(n: float) -> str:
  """40000 → '40k', 3.16e8 → '316M' (cell names)."""
  for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if n >= scale:
      return f"{n / scale:.3g}{unit}"
  return f"{n:g}"


def get_config(arg: str | None = None):
  """Not a config of its own: given as --config, say which files are."""
  raise ValueError("configs/study_common.py holds the pieces the study configs share; give one of "
                   "configs/study_babi.py, study_forgetting.py, study_ptpp.py")
