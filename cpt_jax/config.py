"""Defaults for every run, and validation that turns a bad field into one clear sentence.

configs/*.py start from `default_config()` and change what they need; the command line changes the rest
(`--config.opt.lr=1e-3`). ml_collections already rejects unknown fields and wrong types at parse time;
`validate` checks values and their relations (sizes, ratios, mesh vs devices, batch vs data axes).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from cpt_jax import model as model_lib, objective as objective_lib, ops, paths, sharding
from cpt_jax.data.records import DataError
from cpt_jax.data.sources import babi_tasks
from cpt_jax.optim import SCHEDULES

STAGES = ("pretrain", "adapt")
SOURCE_KINDS = ("corpus", "babi", "tfds", "records", "files", "hf", "none")
REPLAY_KINDS = ("none", "real", "self")
DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and what to do."""


def source_config(kind: str = "none", name: str = "") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "kind": kind,  # one of SOURCE_KINDS
      "name": name,  # corpus name (english, spanish), TFDS name, Hugging Face hub dataset, or a label
      "path": "",  # records: dataset dir (.../name/1.0.0); files: glob with {split}; tfds: data_dir;
      # hf: local Parquet / JSON Lines / save_to_disk dir or glob (empty: the hub dataset `name`)
      "text_field": "text",  # hf: the field that holds each document's text
      "train_split": "train",
      "eval_split": "validation",
      # tokens of the train split (as the run's tokenizer counts them), for the study's cost and epoch check
      # (cpt_jax/study_cost.py: a run reading a corpus > 4 times is refused); 0: measured for corpus and babi
      # sources, unknown for the others. State it for large hf/tfds corpora (FineWeb-Edu sample-10BT: 10e9)
      "size_tokens": 0.0,
      # hf: the first N documents of each split read (0: all; a held-out validation comes out of train's N): a
      # hub corpus such as FineWeb-Edu is streamed, and only this slice of it is downloaded and written. A capped
      # source's size_tokens must then be the slice's, or the study's epoch check undercounts
      "max_documents": 0,
      "babi_mode": "synthetic",  # babi: original | synthetic
      "babi_stories": 200,  # babi: stories per task
      "babi_tasks": "all",  # babi: "all" or comma-separated task numbers
      # babi: generation seed of the stories (not the run's seed, which sets their order and the init), so runs
      # of several seeds train on the same stories
      "babi_data_seed": 0,
      # babi: generation seed of the held-out test stories (train.babi_eval_stories); must differ from the above
      "babi_eval_seed": 1000,
      # babi: only stories of at most this many statements, in training and test stories alike (0: no limit), so
      # that a small context holds every question's passage whole (data.babi.stats.truncated_share measures it)
      "babi_max_statements": 0,
  })


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.stage = "pretrain"  # pretrain: from scratch; adapt: from `init_from` with a frozen teacher
  c.init_from = ""  # adapt: workdir of the run whose weights start this one
  c.init_step = -1  # adapt: which checkpoint step of init_from (-1: latest)

  c.model = ml_collections.ConfigDict({
      "num_layers": 4, "d_model": 256, "num_heads": 4, "mlp_ratio": 4,
      "max_len": 128,  # context length T
      "tie_embeddings": True, "dropout": 0.0,
      "compute_dtype": "float32",  # bfloat16 on TPU/GPU; f32 is faster on most CPUs
      # none | full | dots_saveable (recompute all but matmul outputs); true/false mean full/none
      "remat": config_dict.FieldReference("none", field_type=object),
      "scan_layers": False,  # blocks stacked and run by a scan: compile time independent of depth
      "attention_impl": "auto",  # auto (cuDNN on a GPU where it fits, blocked on CPU, else xla) | xla | cudnn | blocked
      "vocab_multiple": 1,  # embedding/head rows padded to a multiple of this (128 for aligned matmuls)
  })
  c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})  # one axis may be -1

  c.opt = ml_collections.ConfigDict({
      "lr": 3e-3, "schedule": "cosine", "warmup_tokens": 200_000, "decay_tokens": 0,  # WSD decay length
      "min_lr_ratio": 0.1,
      "b1": 0.9, "b2": 0.99,  # raw betas, used when the half-lives below are 0
      "b1_halflife_tokens": 0.0, "b2_halflife_tokens": 0.0,  # β = 0.5 ** (tokens_per_step / half-life)
      "eps": 1e-8, "weight_decay": 0.1, "decay_embeddings": False, "clip_norm": 1.0,
  })

  c.data = ml_collections.ConfigDict({
      "data_dir": "",  # default: $CPT_JAX_DATA or ~/.cache/cpt_jax
      "batch_size": 32,  # global rows per step (target + replay)
      "tokenizer": "",  # path of a SentencePiece model; empty: trained from data.base (pretrain)
      "vocab_size": 4096,
      "answer_only": True,  # prompt/completion data: loss on the completion only
      # this share of every batch's rows are copy rows: spans from unrelated places of data.base shown twice, the
      # loss on the repeats only, added to the objective as copy_weight × their own mean; teaches in-context
      # copying (eval/copy_text/gain), which bAbI's lookups need (cpt_jax/objective.py)
      "copy_share": 0.0,
      "copy_weight": 1.0,
      "base": source_config("corpus", "english"),  # pretraining domain: trained on, evaluated as eval/base
      "target": source_config(),  # adaptation domain: trained on when adapting, evaluated as eval/target
  })

  c.replay = ml_collections.ConfigDict({
      "ratio": 0.0,  # share of every batch's rows that are replay (must be realizable exactly: rows, shards)
      "kind": "none",  # none | real (data.base) | self (samples of the frozen start model)
      # mixture: replay is training data, one token-mean over the mixed batch (weight = its token share);
      # regularizer: mean over target tokens + coeff · mean over replay tokens (cpt_jax/objective.py)
      "semantics": "mixture",
      "loss": "ntp",  # ntp | kl (KL(teacher‖student) over the full vocabulary; regularizer only)
      "coeff": 1.0,  # λ of the regularizer semantics
      "samples": "",  # self: dataset dir of samples (tools/generate_replay.py); empty: made on the fly
      "chunk_sequences": 256,  # self, on the fly: sequences sampled per chunk (never reused)
      "teacher_dtype": "float32",  # bfloat16 halves the teacher's memory
  })

  c.train = ml_collections.ConfigDict({
      "total_tokens": 2_000_000,  # used when ptpp/atpp are 0
      "ptpp": 0.0,  # pretrain: tokens = ptpp · parameters
      "atpp": 0.0,  # adapt: tokens = atpp · parameters
      "save_at_ptpp": "",  # comma-separated PTPP stages at which to keep a checkpoint forever
      "eval_every_tokens": 500_000, "eval_rows": 64,
      "babi_eval_examples": 0,  # bAbI questions scored per evaluation and test set (task-balanced); 0: no bAbI scoring
      # bAbI test stories per task, generated apart from the training data (data.target.babi_eval_seed), in every
      # run the same; 0: the target's own validation split (eval/babi/...) instead
      "babi_eval_stories": 0,
      # crossed scoring: comma-separated variants (synthetic,original) also scored on their held-out test stories
      # (eval/babi_<variant>/...); empty: the target's own variant only (eval/babi/...)
      "babi_eval_modes": "",
      # test stories whose text is among the first N generated stories of their variant (its training pool) are
      # dropped; 0: data.target.babi_stories. Crossed scoring: the largest babi_stories of the compared runs
      "babi_eval_exclude_stories": 0,
      "log_every_steps": 10,
      "checkpoint_every_tokens": 1_000_000, "keep_checkpoints": 2,
      "max_nonfinite_skips": 0,  # 0: stop on the first NaN/Inf; k: skip up to k such batches
      "progress": True,
      "stop_at_step": 0,  # >0: end this invocation at that step with a checkpoint (rerun continues)
      "profile_steps": "",  # "A:B": a jax.profiler trace of steps A..B in WORKDIR/profile (docs/performance.md)
      # persistent XLA compilation cache: a relaunch loads the compiled steps instead of compiling them
      "compile_cache": True,
      "compile_cache_dir": "",  # default: $CPT_JAX_COMPILE_CACHE or ~/.cache/cpt_jax/jax_cache
      # The workdir's lease (cpt_jax/lease.py): one not renewed for this long is stale and taken over (a holder
      # on another host is watched that long first); 0: only a holder known to be dead (same host) is taken over.
      "lease_timeout_seconds": 600.0,
      "allow_budget_change": False,  # resume with another total_tokens/ptpp/atpp (recorded in config_changes.jsonl)
  })
  return c


def _err(field: str, value, what: str) -> ConfigError:
  return ConfigError(f"config field {field}={value!r}: {what}")


def _get(c, dotted: str):
  for key in dotted.split("."):
    c = c[key]
  return c


def _positive(c, field: str):
  value = _get(c, field)
  if not value > 0:
    raise _err(field, value, "must be > 0")


def validate(c: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks values and relations; raises ConfigError naming the first bad field."""
  if c.stage not in STAGES:
    raise _err("stage", c.stage, f"must be one of {STAGES}")
  if c.stage == "adapt" and not c.init_from:
    raise _err("init_from", c.init_from, "adapt needs the workdir of a pretraining run to start from")
  if c.stage == "adapt":
    _validate_init_from(c.init_from, c.init_step)
  for f in ("num_layers", "d_model", "num_heads", "mlp_ratio", "max_len"):
    _positive(c, f"model.{f}")
  if c.model.d_model % c.model.num_heads:
    raise _err("model.num_heads", c.model.num_heads, f"must divide model.d_model={c.model.d_model}")
  if not 0 <= c.model.dropout < 1:
    raise _err("model.dropout", c.model.dropout, "must be in [0, 1)")
  if c.model.compute_dtype not in DTYPES:
    raise _err("model.compute_dtype", c.model.compute_dtype, f"must be one of {DTYPES}")
  try:
    model_lib.remat_policy(c.model.remat)
  except ValueError:
    raise _err("model.remat", c.model.remat, f"must be one of {model_lib.REMAT_POLICIES} (or true/false)") from None
  if c.model.attention_impl not in ops.ATTENTION_IMPLS:
    raise _err("model.attention_impl", c.model.attention_impl, f"must be one of {ops.ATTENTION_IMPLS}")
  if c.model.vocab_multiple < 1:
    raise _err("model.vocab_multiple", c.model.vocab_multiple, "must be ≥ 1 (1: no padding)")
  try:
    mesh_shape = sharding.resolve_mesh_shape(c.mesh, num_devices)
  except sharding.MeshError as e:
    raise ConfigError(f"config field mesh: {e}") from None
  for f in ("lr", "batch_size", "vocab_size"):
    _positive(c, f"opt.{f}" if f == "lr" else f"data.{f}")
  if not 0 <= c.data.copy_share < 1:
    raise _err("data.copy_share", c.data.copy_share, "must be in [0, 1): the share of each batch's rows that are "
               "copy rows")
  if c.opt.schedule not in SCHEDULES:
    raise _err("opt.schedule", c.opt.schedule, f"must be one of {SCHEDULES}")
  for f in ("b1", "b2"):
    if not 0 <= c.opt[f] < 1:
      raise _err(f"opt.{f}", c.opt[f], "must be in [0, 1)")
    if c.opt[f"{f}_halflife_tokens"] < 0:
      raise _err(f"opt.{f}_halflife_tokens", c.opt[f"{f}_halflife_tokens"], "must be ≥ 0 (0: use the raw beta)")
  for f in ("warmup_tokens", "decay_tokens", "weight_decay", "clip_norm"):
    if c.opt[f] < 0:
      raise _err(f"opt.{f}", c.opt[f], "must be ≥ 0")
  if c.opt.schedule == "wsd" and not c.opt.decay_tokens > 0:
    raise _err("opt.decay_tokens", c.opt.decay_tokens, "the wsd schedule needs a decay length > 0 (tokens)")
  if not 0 <= c.opt.min_lr_ratio <= 1:
    raise _err("opt.min_lr_ratio", c.opt.min_lr_ratio, "must be in [0, 1]")
  for name in ("base", "target"):
    _validate_source(c.data[name], f"data.{name}")
  train_source = c.data.base if c.stage == "pretrain" else c.data.target
  if train_source.kind == "none":
    raise _err(f"data.{'base' if c.stage == 'pretrain' else 'target'}.kind", "none",
               f"the {c.stage} stage trains on this source; set its kind to one of {SOURCE_KINDS[:-1]}")
  _validate_replay(c, mesh_shape)
  for f in ("eval_every_tokens", "eval_rows", "log_every_steps", "checkpoint_every_tokens", "keep_checkpoints"):
    _positive(c, f"train.{f}")
  for f in ("total_tokens", "ptpp", "atpp", "babi_eval_examples", "babi_eval_stories", "babi_eval_exclude_stories",
            "max_nonfinite_skips", "stop_at_step", "lease_timeout_seconds"):
    if c.train[f] < 0:
      raise _err(f"train.{f}", c.train[f], "must be ≥ 0")
  _validate_babi_eval(c)
  if c.stage == "pretrain" and c.train.atpp:
    raise _err("train.atpp", c.train.atpp, "is for adapt runs; use train.ptpp to size pretraining")
  if c.stage == "adapt" and c.train.ptpp:
    raise _err("train.ptpp", c.train.ptpp, "is for pretraining; use train.atpp to size adaptation")
  if not (c.train.total_tokens or c.train.ptpp or c.train.atpp):
    raise _err("train.total_tokens", 0, "set a token budget (or train.ptpp / train.atpp)")
  try:
    [float(x) for x in c.train.save_at_ptpp.split(",") if x.strip()]
  except ValueError:
    raise _err("train.save_at_ptpp", c.train.save_at_ptpp, "must be comma-separated numbers") from None
  if c.train.profile_steps and not _is_step_range(c.train.profile_steps):
    raise _err("train.profile_steps", c.train.profile_steps, "must be A:B with 1 ≤ A ≤ B (steps A..B are traced)")


def _is_step_range(text: str) -> bool:
  first, sep, last = text.partition(":")
  return bool(sep) and first.strip().isdigit() and last.strip().isdigit() and 1 <= int(first) <= int(last)


def _validate_init_from(init_from: str, init_step: int) -> None:
  """The start run must be readable before anything is built: its config.json gives the architecture, its
  checkpoints the weights. A directory without config.json is named by the loader that reads it."""
  run = paths.path(init_from)
  if not run.is_dir():
    what = "is a file, not a run directory" if run.exists() else "no such directory"
    raise _err("init_from", init_from, f"{what}; give the --workdir of a finished pretraining run")
  config_file = run / "config.json"
  if not config_file.exists():
    return
  try:
    saved = paths.read_json(config_file)
    model = saved["model"]
    bad = [k for k in ("num_layers", "d_model", "num_heads", "mlp_ratio", "max_len", "tie_embeddings")
           if not isinstance(model.get(k), (int, bool))]
    why = f"model fields {bad} missing or not numbers" if bad else ""
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    why = f"{type(e).__name__}: {str(e)[:120]}"
  if why:
    raise _err("init_from", init_from, f"its config.json (which gives the model's architecture) is unreadable "
               f"({why}); restore it from a backup, or give another run")
  from cpt_jax import checkpoint  # pylint: disable=g-import-not-at-top  # Orbax: heavy, needed only here
  checkpoints = run / "checkpoints"
  steps = checkpoint.committed_steps(str(checkpoints))
  if checkpoints.exists() and not checkpoints.is_dir():
    raise _err("init_from", init_from, f"{checkpoints} is a file, not a checkpoint directory; give another run")
  if not steps:
    what = "holds no committed checkpoint" if checkpoints.is_dir() else "does not exist"
    raise _err("init_from", init_from, f"{checkpoints} {what}: that run has not saved a checkpoint yet. Rerun it "
               "until it does, or give another run")
  if init_step >= 0 and init_step not in steps:
    raise _err("init_step", init_step, f"{checkpoints} has no committed step {init_step}; it has {steps} "
               "(-1: the latest)")


def _validate_source(s, field: str) -> None:
  if s.kind not in SOURCE_KINDS:
    raise _err(f"{field}.kind", s.kind, f"must be one of {SOURCE_KINDS}")
  if s.kind in ("records", "files") and not s.path:
    raise _err(f"{field}.path", s.path, f"a {s.kind} source needs a path")
  if s.kind == "records":
    d = paths.path(s.path)
    if not (d / "dataset_info.json").exists():
      versions = sorted(v.name for v in d.iterdir() if (v / "dataset_info.json").exists()) if d.is_dir() else []
      what = ("no such directory" if not d.exists() else "is a file" if not d.is_dir() else
              f"no dataset_info.json in it (did you mean {d / versions[-1]}?)" if versions else
              "no dataset_info.json in it")
      raise _err(f"{field}.path", s.path, f"{what}; a records source is the version directory of a dataset "
                 "(.../NAME/1.0.0, which holds dataset_info.json)")
    try:
      paths.read_json(d / "dataset_info.json")
    except (OSError, ValueError) as e:
      raise _err(f"{field}.path", s.path, f"the dataset is damaged: dataset_info.json is not readable JSON "
                 f"({type(e).__name__}: {str(e)[:120]}); write the dataset again") from None
  if s.kind == "files" and paths.path(s.path).is_dir():
    raise _err(f"{field}.path", s.path, "is a directory; a files source's path is a glob of files, e.g. "
               "DIR/{split}_*.txt")
  if s.kind == "tfds" and s.path and not paths.path(s.path).is_dir():
    what = "is a file" if paths.path(s.path).exists() else "no such directory"
    raise _err(f"{field}.path", s.path, f"{what}; a tfds source's path is a TFDS data_dir (the directory that holds "
               "NAME/VERSION/), or empty for the default")
  if s.kind == "hf" and not (s.name or s.path):
    raise _err(f"{field}.name", s.name, "an hf source needs a hub dataset name or a local path (Parquet, JSON Lines, "
               "save_to_disk directory)")
  if s.get("max_documents", 0) < 0 or (s.get("max_documents", 0) and s.kind != "hf"):
    raise _err(f"{field}.max_documents", s.max_documents, "must be ≥ 0, and applies to hf sources only (0: all)")
  if s.get("size_tokens", 0) < 0:
    raise _err(f"{field}.size_tokens", s.size_tokens, "must be ≥ 0 (0: measured or unknown)")
  if s.kind in ("corpus", "tfds") and not s.name:
    raise _err(f"{field}.name", s.name, f"a {s.kind} source needs a name")
  if s.kind == "babi":
    if s.babi_mode not in ("original", "synthetic"):
      raise _err(f"{field}.babi_mode", s.babi_mode, "must be original or synthetic")
    if s.babi_stories <= 0:
      raise _err(f"{field}.babi_stories", s.babi_stories, "must be > 0")
    try:
      babi_tasks(s.babi_tasks)
    except DataError as e:
      raise ConfigError(f"config field {field}.{e}") from None
    for f in ("babi_data_seed", "babi_eval_seed", "babi_max_statements"):
      if s[f] < 0:
        raise _err(f"{field}.{f}", s[f], "must be ≥ 0")
    if s.babi_eval_seed == s.babi_data_seed:
      raise _err(f"{field}.babi_eval_seed", s.babi_eval_seed, f"must differ from {field}.babi_data_seed: the test "
                 "stories would be the training stories")


def babi_eval_modes(spec: str) -> list[str]:
  """The variants of `train.babi_eval_modes` (empty: none crossed)."""
  return [m.strip() for m in spec.split(",") if m.strip()]


def _validate_babi_eval(c) -> None:
  """Crossed bAbI scoring needs held-out test stories that are the same in every run it compares."""
  t = c.train
  modes = babi_eval_modes(t.babi_eval_modes)
  bad = [m for m in modes if m not in ("synthetic", "original")]
  if bad or len(set(modes)) < len(modes):
    raise _err("train.babi_eval_modes", t.babi_eval_modes, "must be empty or comma-separated distinct variants of "
               "synthetic, original")
  if not modes and not t.babi_eval_stories:
    return
  if c.data.target.kind != "babi":
    raise _err("train.babi_eval_modes" if modes else "train.babi_eval_stories",
               t.babi_eval_modes if modes else t.babi_eval_stories,
               f"scores bAbI test stories, but data.target.kind={c.data.target.kind!r}; set it to babi or clear this")
  if not t.babi_eval_examples:
    raise _err("train.babi_eval_examples", 0, "bAbI scoring is off; set the questions scored per test set (> 0)")
  if modes and not t.babi_eval_stories:
    raise _err("train.babi_eval_stories", 0, f"crossed scoring (train.babi_eval_modes={t.babi_eval_modes!r}) needs "
               "held-out test stories per task (> 0), generated apart from any training data")
  exclude = t.babi_eval_exclude_stories
  if exclude and exclude < c.data.target.babi_stories:
    raise _err("train.babi_eval_exclude_stories", exclude, f"is below data.target.babi_stories="
               f"{c.data.target.babi_stories}: test stories could be training stories; set it ≥ that (0: equal)")
  if any(m != c.data.target.babi_mode for m in modes) and not exclude:
    raise _err("train.babi_eval_exclude_stories", 0, "crossed scoring compares runs trained on different variants: "
               "set it to the largest data.target.babi_stories among them, so that every run drops the same test "
               "stories (those in any of their training data)")


def _validate_replay(c, mesh_shape) -> None:
  r = c.replay
  if not 0 <= r.ratio <= 0.9:
    raise _err("replay.ratio", r.ratio, "must be in [0, 0.9]")
  if r.kind not in REPLAY_KINDS:
    raise _err("replay.kind", r.kind, f"must be one of {REPLAY_KINDS}")
  if r.teacher_dtype not in DTYPES:
    raise _err("replay.teacher_dtype", r.teacher_dtype, f"must be one of {DTYPES}")
  if (r.ratio > 0) != (r.kind != "none"):
    raise _err("replay.ratio", r.ratio, f"replay.kind={r.kind!r}: set both a ratio > 0 and a kind, or neither")
  shards = mesh_shape[0] * mesh_shape[1]
  if c.data.batch_size % shards:
    raise _err("data.batch_size", c.data.batch_size,
               f"must be divisible by the data axes (mesh.data × mesh.fsdp = {shards})")
  try:
    objective_lib.resolve(r, c.stage, c.data.batch_size, shards, copy_share=c.data.copy_share,
                          copy_weight=c.data.copy_weight)
  except objective_lib.ObjectiveError as e:
    raise ConfigError(str(e)) from None
