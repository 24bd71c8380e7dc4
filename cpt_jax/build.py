"""Builds a run's pieces from its config: tokenizer, model (already sharded), optimizer, data streams,
evaluation sets. No training happens here; loop.py drives these pieces."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from cpt_jax import checkpoint as ckpt_lib, config as config_lib, model as model_lib, objective as objective_lib
from cpt_jax import ops, param_layout, paths, sampling, sharding, step as step_lib
from cpt_jax.data import copy_probe, pipeline, sources
from cpt_jax.data.records import DataError, RecordSource
from cpt_jax.data.tokenizer import Tokenizer, copy_tokenizer, load_tokenizer, run_tokenizer_path, train_tokenizer
from cpt_jax.objective import Objective
from cpt_jax.replay import self_replay_rows

CONFIG_FILE = "config.json"


@dataclasses.dataclass
class ModelBundle:
  cfg: model_lib.ModelConfig
  graphdef: Any
  abstract_params: Any
  param_shardings: Any
  num_params: int


def resolve_tokenizer(cfg, workdir: str, data_dir: Path) -> Tokenizer:
  """The run's tokenizer, copied into the workdir so that checkpoints never lose it.

  Order: the workdir's own copy (resume) > data.tokenizer > init_from's (adapt) > trained from data.base.
  """
  own = run_tokenizer_path(workdir)
  if own.exists():
    tok = load_tokenizer(own)
    other = load_tokenizer(cfg.data.tokenizer) if cfg.data.tokenizer else tok
    if other.model_bytes != tok.model_bytes:
      raise DataError(f"data.tokenizer={cfg.data.tokenizer} (vocab {other.vocab_size}) is not the tokenizer this "
                      f"workdir was trained with ({own}, vocab {tok.vocab_size}); resume without data.tokenizer, "
                      "or start a new --workdir")
    return tok
  if cfg.data.tokenizer:
    tok = load_tokenizer(cfg.data.tokenizer)
  elif cfg.stage == "adapt":
    tok = load_tokenizer(run_tokenizer_path(cfg.init_from))
  else:
    base = cfg.data.base
    path = data_dir / "tokenizers" / f"{base.kind}_{base.name or 'data'}_v{cfg.data.vocab_size}.model"
    if path.exists():
      tok = Tokenizer(path)
    else:
      source = sources.open_source(base, base.train_split, data_dir, cfg.seed)
      tok = train_tokenizer(sources.iter_texts(source, 20_000_000), path, cfg.data.vocab_size)
  if jax.process_index() == 0:
    return copy_tokenizer(tok, workdir)
  return tok


ARCHITECTURE = ("num_layers", "d_model", "num_heads", "mlp_ratio", "max_len", "tie_embeddings", "vocab_multiple")


def adopt_architecture(cfg) -> None:
  """Adapt runs take the architecture from the run they start from: a differing field of `cfg.model` is
  overwritten in place (idempotent). The trainer does this before it compares `cfg` with the config a resumed
  run saved, which holds the adopted values. The layer layout (model.scan_layers) is not architecture: the
  start weights are converted if it differs."""
  if cfg.stage != "adapt":
    return
  if not (paths.path(cfg.init_from) / CONFIG_FILE).exists():
    raise DataError(f"{cfg.init_from} is not the workdir of a cpt_jax run ({paths.path(cfg.init_from) / CONFIG_FILE} "
                    "not found): init_from takes the --workdir of a pretraining run")
  saved = load_run_config(cfg.init_from)
  arch = {k: saved.model[k] for k in ARCHITECTURE if k in saved.model}
  arch.setdefault("vocab_multiple", 1)  # a run from before vocabulary padding existed
  changed = {k: (cfg.model[k], v) for k, v in arch.items() if cfg.model[k] != v}
  if changed:
    logging.info("adapt: architecture taken from %s (config had %s)", cfg.init_from, changed)
  with cfg.model.unlocked():
    cfg.model.update(arch)


def model_config(cfg, tokenizer: Tokenizer) -> model_lib.ModelConfig:
  """The model of `cfg` (an adapt run's architecture adopted from `init_from`). The attention implementation
  is resolved (and logged) here, so a platform that cannot run it fails early."""
  adopt_architecture(cfg)
  model = model_lib.ModelConfig.from_config(cfg.model, tokenizer.vocab_size)
  try:
    ops.attention_implementation(model.attention_impl, model.compute_dtype, model.head_dim)
  except ValueError as e:
    raise config_lib.ConfigError(f"config field {e}") from None
  return model


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  path = paths.path(workdir) / CONFIG_FILE
  if not path.exists():
    raise DataError(f"{path} not found: is {workdir} the workdir of a cpt_jax run?")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def model_bundle(model_cfg: model_lib.ModelConfig, mesh) -> ModelBundle:
  """Structure, abstract parameters and their shardings, without allocating anything."""
  abstract_model = nnx.eval_shape(lambda: model_lib.GPT(model_cfg, nnx.Rngs(0)))
  graphdef, abstract_state = nnx.split(abstract_model)
  logical = nnx.to_pure_dict(jax.tree.map(lambda v: v.get_metadata().get("logical_axes"), abstract_state,
                                          is_leaf=lambda x: isinstance(x, nnx.Variable)))
  abstract_params = nnx.to_pure_dict(abstract_state)
  shardings = sharding.param_shardings(logical, abstract_params, mesh)
  return ModelBundle(model_cfg, graphdef, abstract_params, shardings, model_lib.total_params(model_cfg))


def sharded_abstract(abstract, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


# XLA:CPU compiles the initialiser's per-parameter random-number code with less LLVM optimisation: the same
# values, 1-1.5 s less compile at every launch (docs/performance.md, "Compilation cache"); it runs once.
CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_params(model_cfg: model_lib.ModelConfig):
  """key -> the model's freshly initialised parameters as a pure dict (what build_model compiles)."""
  return lambda key: nnx.to_pure_dict(nnx.state(model_lib.GPT(model_cfg, nnx.Rngs(params=key))))


def build_model(model_cfg: model_lib.ModelConfig, mesh, seed: int):
  """Parameters created already sharded: abstract init → shardings → jit(init, out_shardings)."""
  bundle = model_bundle(model_cfg, mesh)
  key = jax.random.key(seed)
  options = CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
  compiled = jax.jit(init_params(model_cfg), out_shardings=bundle.param_shardings).lower(key).compile(
      compiler_options=options)
  return bundle, compiled(key)


def state_shardings(bundle: ModelBundle, optimizer, mesh):
  """Abstract train state and its shardings: moments shard like their parameters, scalars replicate."""
  abstract_state = jax.eval_shape(lambda p: step_lib.init_state(p, optimizer), bundle.abstract_params)
  opt_shardings = optax.tree_map_params(
      optimizer, lambda _, s: s, abstract_state["opt_state"], bundle.param_shardings,
      transform_non_params=lambda _: sharding.replicated(mesh))
  shardings = {"step": sharding.replicated(mesh), "params": bundle.param_shardings, "opt_state": opt_shardings}
  return abstract_state, shardings


def restore_weights(checkpointer: ckpt_lib.Checkpointer, target: Any, step: int | None = None):
  """(step, params, None, meta) of a weights-only restore into `target` (sharded abstract parameters); a
  checkpoint saved with the other layer layout (model.scan_layers) is read in its own layout, converted and
  placed with `target`'s shardings (the layer axis is never sharded, so the other layout's shardings follow)."""
  try:
    return checkpointer.restore(target, step=step, weights_only=True)
  except ckpt_lib.LayoutMismatch as e:
    saved_scan = e.saved_layout == "scan"
    mesh = jax.tree.leaves(target)[0].sharding.mesh
    abstract = lambda shape, dtype, spec: jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, P(*spec)))
    stack = lambda xs: abstract((len(xs),) + xs[0].shape, xs[0].dtype, (None, *xs[0].sharding.spec))
    take = lambda x, i: abstract(x.shape[1:], x.dtype, tuple(x.sharding.spec)[1:])
    saved_target = param_layout.convert_layout(target, saved_scan, stack=stack, take=take)
    logging.info("%s: step %d holds the %s layout of the blocks; converting", checkpointer.directory, e.step,
                 e.saved_layout)
    s, params, data, meta = checkpointer.restore(saved_target, step=e.step, weights_only=True)
    out_shardings = jax.tree.map(lambda x: x.sharding, target)
    params = jax.jit(lambda p: param_layout.convert_layout(p, not saved_scan), out_shardings=out_shardings)(params)
    return s, params, data, meta


def num_params_of(cfg) -> int:
  """Parameter count of a config's model without building it (vocab = data.vocab_size)."""
  return model_lib.total_params(model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size))


def token_budget(cfg, num_params: int) -> int:
  if cfg.train.ptpp:
    return int(cfg.train.ptpp * num_params)
  if cfg.train.atpp:
    return int(cfg.train.atpp * num_params)
  return int(cfg.train.total_tokens)


def tokens_per_step(cfg) -> int:
  return cfg.data.batch_size * cfg.model.max_len


def stage_steps(cfg, num_params: int) -> list[int]:
  """Steps at which a pretraining run reaches each PTPP of `train.save_at_ptpp` (kept forever)."""
  stages = [float(x) for x in cfg.train.save_at_ptpp.split(",") if x.strip()]
  return sorted({max(1, math.ceil(p * num_params / tokens_per_step(cfg))) for p in stages})


def train_source(cfg, data_dir: Path) -> sources.Source:
  """The records this stage trains on: data.base when pretraining, data.target when adapting."""
  src_cfg = cfg.data.base if cfg.stage == "pretrain" else cfg.data.target
  return sources.open_source(src_cfg, src_cfg.train_split, data_dir, cfg.seed)


def resolve_objective(cfg, mesh, train_src: sources.Source | None = None) -> Objective:
  """The run's objective; whether rows are packed examples comes from what the trained records hold."""
  example_rows = train_src is not None and pipeline.record_kind(train_src[0]) == "example"
  try:
    return objective_lib.resolve(cfg.replay, cfg.stage, cfg.data.batch_size, sharding.batch_shards(mesh),
                                 example_rows=example_rows, dropout=cfg.model.dropout > 0,
                                 copy_share=cfg.data.copy_share, copy_weight=cfg.data.copy_weight)
  except objective_lib.ObjectiveError as e:
    raise config_lib.ConfigError(str(e)) from None


def make_loader(cfg, tokenizer: Tokenizer, mesh, train_src: sources.Source, objective: Objective,
                replay_rows=None) -> pipeline.BatchLoader:
  """Training batches: one global order of target rows (+ replay rows) that this process's batch shards
  slice, so the global batches depend neither on the process count nor on the number of batch shards."""
  n = objective.batch_shards
  target = pipeline.rows(train_src, tokenizer, cfg.model.max_len, cfg.seed, True, cfg.data.answer_only,
                         report=jax.process_index() == 0)
  streams = [("target", target, n * objective.target_rows_per_shard)]
  if objective.has_replay:
    streams.append(("replay", replay_rows, n * objective.replay_rows_per_shard))
  if objective.has_copy:  # base-corpus text in an order of its own (seed + 3: other rows than a replay stream's)
    base = sources.open_source(cfg.data.base, cfg.data.base.train_split, sources.data_dir_of(cfg.data), cfg.seed)
    copies = pipeline.copy_rows(base, tokenizer, cfg.model.max_len, cfg.seed + 3)
    streams.append(("copy", copies, n * objective.copy_rows_per_shard))
  return pipeline.BatchLoader(streams, objective.batch_keys, n, sharding.local_batch_shards(mesh))


def replay_stream(cfg, tokenizer: Tokenizer, data_dir: Path, bundle: ModelBundle, teacher_params):
  """The replay rows (a Grain dataset): real base-domain data, a dataset of self-generated samples, or
  samples made on the fly from the frozen start model."""
  row_len = cfg.model.max_len
  if cfg.replay.kind == "real":
    source = sources.open_source(cfg.data.base, cfg.data.base.train_split, data_dir, cfg.seed)
  elif cfg.replay.samples:
    source = RecordSource(cfg.replay.samples, "train")
  else:
    if bundle.cfg.max_len != row_len:
      raise config_lib.ConfigError(f"config field model.max_len: replay rows need a context of {row_len}")
    if jax.process_count() > 1:  # the sampler is one global computation; processes would sample in lockstep
      raise config_lib.ConfigError(
          "config field replay.samples is empty: on-the-fly self-replay runs in a single process only. On "
          "several processes, write the samples first (python tools/generate_replay.py --workdir INIT_FROM "
          "--out DIR --tokens N) and set --config.replay.samples=DIR/self_replay/1.0.0")
    sampler = sampling.make_sampler(bundle.graphdef, bundle.cfg, cfg.replay.chunk_sequences,
                                    bos_id=tokenizer.bos_id)
    return self_replay_rows(sampler, teacher_params, jax.random.key(cfg.seed + 2), cfg.replay.chunk_sequences)
  return pipeline.rows(source, tokenizer, row_len, cfg.seed + 1, True, report=jax.process_index() == 0)


def eval_sets(cfg, tokenizer: Tokenizer, data_dir: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
  """Fixed validation rows per source ("base", "target"), the copying probe's (data/copy_probe.py) and each
  split's unigram entropy.

  Rows are drawn across the whole split with a fixed shuffle (seed 0, whatever the run's seed) so that
  runs of a study are evaluated on the same rows. The unigram entropy is over the whole split's tokens
  (text) or over the eval rows' scored tokens (task data): the loss of a model that knows only token
  frequencies.
  """
  rows_by_name, entropy = {}, {}
  for name in ("base", "target"):
    src_cfg = cfg.data[name]
    if src_cfg.kind == "none":
      continue
    src = sources.open_source(src_cfg, src_cfg.eval_split, data_dir, cfg.seed)
    rows = pipeline.take(pipeline.rows(src, tokenizer, cfg.model.max_len, seed=0, shuffle=True,
                                       answer_only=cfg.data.answer_only, report=jax.process_index() == 0),
                         cfg.train.eval_rows)
    kind = pipeline.record_kind(src[0])
    rows_by_name[name] = {k: rows[k] for k in objective_lib.batch_keys(example_rows=kind == "example")}
    if name == "base" and kind == "text":  # eval/copy_text/gain: copying the base corpus's own tokens
      rows_by_name.update(copy_probe.text_copy_rows(rows))
    if kind == "text":
      entropy[f"eval/{name}/unigram_entropy"] = pipeline.source_unigram_entropy(src, tokenizer)
    else:
      entropy[f"eval/{name}/unigram_entropy"] = pipeline.unigram_entropy(rows["targets"], rows["loss_mask"],
                                                                        tokenizer.vocab_size)
  # in-context copying (eval/copy/gain): two more sets of eval_rows rows, shaped like the text sets so that their
  # compiled eval step serves (the same tokens under two masks: one forward pass more per evaluation, no compile)
  rows_by_name.update(copy_probe.copy_rows(tokenizer.vocab_size, tokenizer.special_ids, tokenizer.bos_id,
                                           tokenizer.pad_id, cfg.model.max_len, cfg.train.eval_rows))
  return rows_by_name, entropy


def save_run_config(cfg, workdir: str) -> None:
  if jax.process_index() == 0:
    paths.write_text_atomic(paths.path(workdir) / CONFIG_FILE, cfg.to_json_best_effort(indent=2))


def frozen_copy(params, dtype: str):
  """A copy of `params` in `dtype` (bf16 halves a teacher's memory), in new buffers, same shardings."""
  return jax.jit(lambda p: jax.tree.map(lambda x: x.astype(jnp.dtype(dtype)) + 0, p))(params)


def load_run(workdir: str, step: int | None = None, mesh=None):
  """(run config, bundle, params, tokenizer, step) of a finished or running run's checkpoint, for tools; either
  layer layout restores."""
  cfg = load_run_config(workdir)
  tokenizer = load_tokenizer(run_tokenizer_path(workdir))
  mesh = mesh or sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  bundle = model_bundle(model_lib.ModelConfig.from_config(cfg.model, tokenizer.vocab_size), mesh)
  target = sharded_abstract(bundle.abstract_params, bundle.param_shardings)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=1_000_000)
  step, params, _, _ = restore_weights(checkpointer, target, step=step)
  checkpointer.close()
  return cfg, bundle, params, tokenizer, step


def babi_eval_examples(cfg, data_dir: Path) -> list[dict]:
  """The target's own bAbI evaluation examples (`eval/babi/...`; empty when not bAbI or not scored)."""
  return babi_eval_sets(cfg, data_dir).get("babi", [])


def babi_eval_sets(cfg, data_dir: Path) -> dict[str, list[dict]]:
  """Metric prefix → the fixed, task-balanced bAbI examples a run is scored on (empty when not bAbI).

  "babi" is the target's own variant: its held-out test stories when `train.babi_eval_stories` > 0, else its
  validation split. "babi_<variant>" for each variant of `train.babi_eval_modes` (crossed scoring) holds that
  variant's test stories, the same in every run whatever its seed or variant, so runs trained on either variant
  are compared on the same questions. The own variant's set is one object under both names (scored once)."""
  target, t = cfg.data.target, cfg.train
  n = t.babi_eval_examples
  if target.kind != "babi" or n <= 0:
    return {}
  stories = t.get("babi_eval_stories", 0)
  exclude = t.get("babi_eval_exclude_stories", 0) or target.babi_stories
  eval_seed = target.get("babi_eval_seed", 1000)

  def balanced(examples):
    by_task: dict[int, list[dict]] = {}
    for ex in examples:
      by_task.setdefault(ex["task"], []).append(ex)
    per_task = max(1, n // max(1, len(by_task)))
    return [ex for task in sorted(by_task) for ex in by_task[task][:per_task]]

  def heldout(mode):
    return balanced(sources.babi_heldout(target, mode, data_dir, stories, eval_seed, exclude))

  if stories:
    out = {"babi": heldout(target.babi_mode)}
  else:
    src = sources.open_source(target, target.eval_split, data_dir, cfg.seed)
    out = {"babi": balanced(src[i] for i in range(len(src)))}
  for mode in config_lib.babi_eval_modes(t.get("babi_eval_modes", "")):
    out[f"babi_{mode}"] = out["babi"] if mode == target.babi_mode and stories else heldout(mode)
  return out
