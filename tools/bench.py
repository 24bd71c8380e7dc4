"""Performance benchmark: one JSON object with every figure of docs/performance.md, measured in ONE process.

    python tools/bench.py [--config configs/pretrain_tiny.py] [--markdown] [--quick] [--reps 5]
    python tools/bench.py --reference --markdown        # the CPU reference shape (docs/performance.md)
    python tools/bench.py --config configs/gpt2.py:124m # on a CPU: plumbing only (reduced batch, f32)
    (compile seconds by depth, layout and cache relaunch: tools/bench_compile.py)

On a CPU, a model over PLUMBING_PARAMS parameters runs with a reduced batch (PLUMBING: 4 rows of 256 tokens),
f32 and one repetition, and says so: its numbers check that everything runs, they measure nothing. On an accelerator the
config's batch and dtype are used and MFU is against the device's bf16 peak from metrics.DEVICE_PEAK_FLOPS.

Everything runs through the project's own code paths: `build.build_model` / `build.state_shardings`,
`step.make_train_step`, `sampling.make_sampler` / `make_recompute_sampler`, `pipeline.rows` / `BatchLoader`,
`checkpoint.Checkpointer`, `metrics.measure_matmul_peak`. Nothing here re-implements them.

Timing on a shared CPU drifts by 2x within minutes, so every ratio is measured side by side: each repetition
runs the matmul peak, the plain step, the KL steps (and the sampler) back to back, and the figure reported is
the median over repetitions of the per-repetition ratio. Absolute rates are medians too.

FLOPs per token (for MFU): 6·(non-embedding params + V·D of the output projection) + 12·L·T·D
(`model.flops_per_token`; attention is counted without the causal discount, embeddings lookups are free: the
CPU's blocked attention, which skips the masked score blocks, does less work than it is credited with, as
causal kernels on accelerators do).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# after sys.path (run from a checkout) and JAX_PLATFORMS (read when jax is imported) are set:
import jax  # noqa: E402
import numpy as np  # noqa: E402

from cpt_jax import build, host_memory, ops, optim, sampling, sharding  # noqa: E402
from cpt_jax import checkpoint as ckpt_lib  # noqa: E402
from cpt_jax import metrics as metrics_lib  # noqa: E402
from cpt_jax import model as model_lib  # noqa: E402
from cpt_jax import objective as objective_lib  # noqa: E402
from cpt_jax import step as step_lib  # noqa: E402
from cpt_jax.data import pipeline, sources  # noqa: E402

KL_RATIOS = (0.25, 0.5)
MFU_GOAL = {"measured": 0.6, "table": 0.45}  # of the CPU's in-process f32 matmul peak / an accelerator's bf16 peak
SAMPLER_BATCH = 64
RECOMPUTE_CONTEXT = 256
GOALS = {
    "mfu": "MFU >= 0.6 of the in-process f32 matmul peak (CPU), >= 0.45 of the device's bf16 peak (accelerator)",
    "kl_cost_ratio": "KL step <= (1 + r/3) * 1.05 of the plain step, r in {0.25, 0.5}",
    "sampler_vs_train": "KV-cache sampler (batch 64) >= 2x training tokens/s",
    "sampler_vs_recompute": "KV-cache sampler >= 10x full recomputation at context 256",
    "data_vs_step": "packer pipeline >= 20x the step's token rate",
    "data_wait_fraction": "the training thread waits for batches <= 1% of the wall time",
    "checkpoint_overhead": "async checkpoint <= 5% of the training time at the config's checkpoint interval",
}


def median(xs):
  return float(statistics.median(xs))


def _timed(fn, n: int) -> float:
  """Seconds per call of `fn` over n calls; `fn` returns something to block on at the end."""
  t = time.perf_counter()
  out = None
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / n


# The CPU reference shape of docs/performance.md: 4 layers, width 256, 4 heads, vocabulary 4096, context 256,
# batch 16, untied head, f32.
REFERENCE = {"model.num_layers": 4, "model.d_model": 256, "model.num_heads": 4, "model.max_len": 256,
             "model.tie_embeddings": False, "model.compute_dtype": "float32", "data.vocab_size": 4096,
             "data.batch_size": 16}
PLUMBING_PARAMS = 50_000_000
# 4 rows (the KL steps' replay ratios need a multiple of 4) of 256 tokens: GPT-2 124M's steps then fit in ~4 GB
PLUMBING = {"data.batch_size": 4, "model.max_len": 256, "model.compute_dtype": "float32",
            "replay.teacher_dtype": "float32"}
PLUMBING_NOTE = ("note: a {params:.0f}M-parameter model on a CPU: reduced batch ({batch} rows of {length} tokens), "
                 "f32, one repetition; these numbers are for plumbing, not performance")


def load_config(path: str, overrides: dict):
  """`path` may carry the config's argument, as on the trainer's command line: configs/gpt2.py:124m."""
  path, _, arg = path.partition(":")
  get_config = runpy.run_path(path)["get_config"]
  cfg = get_config(arg) if arg else get_config()
  cfg.update_from_flattened_dict(overrides)
  return cfg


def plumbing_only(cfg) -> bool:
  """A CPU and a model this large: one step takes seconds to minutes, so the bench only checks the plumbing."""
  params = model_lib.total_params(model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size))
  return jax.default_backend() == "cpu" and params > PLUMBING_PARAMS


def _text_source(cfg, min_chars: int):
  """The config's base corpus when it is already prepared on disk, else synthetic English documents."""
  try:
    data_dir = sources.data_dir_of(cfg.data)
    base = cfg.data.base
    prepared = base.kind == "corpus" and (data_dir / f"cpt_{base.name}").is_dir()  # never fetch or prepare here
    if prepared:
      return sources.open_source(base, base.train_split, data_dir, cfg.seed), f"corpus:{base.name}"
  except Exception:  # pylint: disable=broad-except  # no prepared corpus: fall back to synthetic text
    pass
  rng = random.Random(0)
  letters = "etaoinshrdlcumwfgypbvkjxqz"
  words = ["".join(rng.choice(letters[:8 + i % 18]) for _ in range(2 + i % 8)) for i in range(3000)]
  weights = [1 / (1 + i) for i in range(len(words))]  # Zipf-like word frequencies
  docs, total = [], 0
  while total < min_chars:
    doc = " ".join(rng.choices(words, weights, k=400)) + "."
    docs.append({"text": doc})
    total += len(doc)
  return sources.ListSource(docs, "synthetic"), "synthetic"


def _tokenizer(cfg, source, workdir: str):
  from cpt_jax.data.tokenizer import Tokenizer, train_tokenizer  # pylint: disable=g-import-not-at-top
  data_dir = sources.data_dir_of(cfg.data)
  base = cfg.data.base
  for vocab in (cfg.data.vocab_size, 4096):  # the packer's speed hardly depends on the vocabulary size
    cached = data_dir / "tokenizers" / f"{base.kind}_{base.name or 'data'}_v{vocab}.model"
    if cached.exists():
      return Tokenizer(cached)
  return train_tokenizer(sources.iter_texts(source, 1_000_000), Path(workdir) / "tok.model", 1000)


class Bench:

  def __init__(self, cfg, quick: bool, reps: int, plumbing: bool = False):
    self.cfg, self.quick, self.reps, self.plumbing = cfg, quick, reps, plumbing
    self.table_peak = metrics_lib.device_peak_flops()  # an accelerator's bf16 peak; None on a CPU (measured)
    self.mesh = sharding.make_mesh(cfg.mesh)
    self.model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size)
    self.bundle, params = build.build_model(self.model_cfg, self.mesh, cfg.seed)
    self.tokens_per_step = build.tokens_per_step(cfg)
    self.optimizer = optim.make_optimizer(cfg.opt, self.tokens_per_step, 10_000)
    self.schedule = optim.lr_schedule(cfg.opt, self.tokens_per_step, 10_000)
    _, self.state_shardings = build.state_shardings(self.bundle, self.optimizer, self.mesh)
    self.teacher = build.frozen_copy(params, cfg.replay.teacher_dtype)
    self.state = jax.jit(lambda p: step_lib.init_state(p, self.optimizer), out_shardings=self.state_shardings)(params)
    del params
    rng = np.random.default_rng(0)
    B, T = cfg.data.batch_size, cfg.model.max_len
    tokens = rng.integers(0, self.model_cfg.vocab_size, (B, T + 1), dtype=np.int32)
    self.batch = sharding.global_batch(
        {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": np.ones((B, T), np.float32)}, self.mesh)
    self.rng = jax.random.key(1)
    self.flops_per_token = model_lib.flops_per_token(self.model_cfg, T)

  # --- steps -------------------------------------------------------------------------------------------
  def make_step(self, ratio: float):
    with self.cfg.unlocked():
      self.cfg.replay.ratio, self.cfg.replay.kind = ratio, "real" if ratio else "none"
      self.cfg.replay.loss, self.cfg.replay.semantics = "kl" if ratio else "ntp", "regularizer" if ratio else "mixture"
    objective = objective_lib.resolve(self.cfg.replay, "adapt", self.cfg.data.batch_size,
                                      sharding.batch_shards(self.mesh))
    return step_lib.make_train_step(self.bundle.graphdef, self.optimizer, objective, self.schedule,
                                    self.state_shardings)

  def run_steps(self, fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
      self.state, m = fn(self.state, self.batch, self.teacher, self.rng)
    jax.block_until_ready((self.state["step"], m["loss"]))
    return (time.perf_counter() - t) / n

  def compile_step(self, fn) -> tuple[object, float]:
    t = time.perf_counter()
    compiled = fn.lower(self.state, self.batch, self.teacher, self.rng).compile()
    return compiled, time.perf_counter() - t

  def steps(self) -> dict:
    plain, compile_s = self.compile_step(self.make_step(0.0))
    kl = {r: self.compile_step(self.make_step(r))[0] for r in KL_RATIOS}
    n = 1 if self.quick or self.plumbing else 2
    for fn in (plain, *kl.values()):  # warm caches, allocator, thread pools
      self.run_steps(fn, 1)
    peak_n = 256 if self.quick else 1024
    peaks, plain_t, kl_t = [], [], {r: [] for r in KL_RATIOS}
    mfus, kl_ratios = [], {r: [] for r in KL_RATIOS}
    peak_of = lambda: self.table_peak or metrics_lib.measure_matmul_peak(n=peak_n, repeats=3)
    for _ in range(self.reps):
      p0 = peak_of()
      t_plain = self.run_steps(plain, n)
      t_kl = {r: self.run_steps(kl[r], n) for r in KL_RATIOS}
      t_plain2 = self.run_steps(plain, n)  # plain before and after: the KL ratio is bracketed
      p1 = peak_of()
      tp = (t_plain + t_plain2) / 2
      peak = (p0 + p1) / 2
      peaks.append(peak)
      plain_t.append(min(t_plain, t_plain2))
      plain_flops = metrics_lib.flops_per_step(self.model_cfg, self.cfg.model.max_len, self.cfg.data.batch_size)
      mfus.append(plain_flops / min(t_plain, t_plain2) / peak)
      for r in KL_RATIOS:
        kl_t[r].append(t_kl[r])
        kl_ratios[r].append(t_kl[r] / tp)
    step_s = median(plain_t)
    return {
        "compile_seconds": compile_s,
        "step_seconds": step_s,
        "train_tokens_per_sec": self.tokens_per_step / step_s,
        "matmul_peak_flops": median(peaks),
        "mfu": median(mfus),
        "mfu_all": mfus, "step_seconds_all": plain_t,
        "kl_cost_ratio": {str(r): median(kl_ratios[r]) for r in KL_RATIOS},
        "kl_step_seconds": {str(r): median(kl_t[r]) for r in KL_RATIOS},
        "_plain": plain,
    }

  # --- sampler -----------------------------------------------------------------------------------------
  def sampler(self, plain_step) -> dict:
    params = self.teacher  # the frozen copy: the state's buffers are donated by every step
    batch = 8 if self.quick else self.cfg.data.batch_size if self.plumbing else SAMPLER_BATCH
    length = self.model_cfg.max_len
    sample = sampling.make_sampler(self.bundle.graphdef, self.model_cfg, batch, length)
    sample(params, jax.random.key(0)).block_until_ready()
    # also at the batch the trainer's self-replay samples with (replay.chunk_sequences), interleaved
    replay_batch = self.cfg.replay.chunk_sequences
    replay_sample = None if self.quick or self.plumbing or replay_batch == batch else sampling.make_sampler(
        self.bundle.graphdef, self.model_cfg, replay_batch, length)
    if replay_sample:
      replay_sample(params, jax.random.key(0)).block_until_ready()
    n = 1 if self.quick or self.plumbing else 2
    ratios, rates, replay_ratios = [], [], []
    for i in range(self.reps):
      t_s = _timed(lambda i=i: sample(params, jax.random.key(i)), 1)
      t_step = self.run_steps(plain_step, n)
      rate = batch * length / t_s
      rates.append(rate)
      ratios.append(rate / (self.tokens_per_step / t_step))
      if replay_sample:
        t_r = _timed(lambda i=i: replay_sample(params, jax.random.key(i)), 1)
        replay_ratios.append(replay_batch * length / t_r / (self.tokens_per_step / self.run_steps(plain_step, n)))
    out = {"sampler_tokens_per_sec": median(rates), "sampler_vs_train": median(ratios), "sampler_batch": batch,
           "sampler_length": length, "sampler_vs_train_all": ratios}
    if replay_sample:
      out.update(sampler_vs_train_at_replay_batch=median(replay_ratios), replay_batch=replay_batch)

    # KV cache vs full recomputation at context 256: a model with max_len 256 (same widths), same batch both
    # ways. Batch 1: recomputation costs 256 full forwards of 256 tokens per sample (~10 s per run here).
    ctx = self.model_cfg.max_len if self.quick else 32 if self.plumbing else RECOMPUTE_CONTEXT
    rbatch = batch if self.quick else 1
    if self.quick:  # the sampler above already is the KV-cache one at this context and batch: one compile less
      big_cfg, big_params, kv = self.model_cfg, params, sample
    else:
      big_cfg = model_lib.ModelConfig(**{**self.model_cfg.__dict__, "max_len": ctx})
      big_bundle, big_params = build.build_model(big_cfg, self.mesh, 0)
      kv = sampling.make_sampler(big_bundle.graphdef, big_cfg, rbatch, ctx)
    rc = sampling.make_recompute_sampler(self.bundle.graphdef if self.quick else big_bundle.graphdef, big_cfg,
                                         rbatch, ctx)
    kv(big_params, jax.random.key(0)).block_until_ready()
    rc(big_params, jax.random.key(0)).block_until_ready()
    rec_ratios = []
    for i in range(1 if self.plumbing else 3):
      t_kv = _timed(lambda i=i: kv(big_params, jax.random.key(i)), 1)
      t_rc = _timed(lambda i=i: rc(big_params, jax.random.key(i)), 1)
      rec_ratios.append(t_rc / t_kv)
    out.update(sampler_vs_recompute=median(rec_ratios), recompute_batch=rbatch, recompute_context=ctx)
    return out

  # --- data --------------------------------------------------------------------------------------------
  def data(self, step_tokens_per_sec: float, workdir: str, plain_step) -> dict:
    cfg = self.cfg
    source, kind = _text_source(cfg, 300_000 if self.quick else 3_000_000)
    tok = _tokenizer(cfg, source, workdir)
    T = cfg.model.max_len
    batches = iter(pipeline.rows(source, tok, T, cfg.seed).batch(cfg.data.batch_size))
    next_batch = lambda: next(batches)
    next_batch()
    n = 3 if self.quick else 20
    rates = []
    for _ in range(self.reps):
      t = time.perf_counter()
      for _ in range(n):
        next_batch()
      rates.append(n * cfg.data.batch_size * T / (time.perf_counter() - t))
    rate = median(rates)
    return {"data_tokens_per_sec": rate, "data_vs_step": rate / step_tokens_per_sec, "data_source": kind,
            "data_wait_fraction": self.data_wait(plain_step, pipeline.rows(source, tok, T, cfg.seed))}

  def data_wait(self, plain_step, rows) -> float:
    """Share of a training loop's wall time the training thread spends waiting in next(loader): the loop's
    own loader (prefetched on a background thread) feeding the plain step."""
    loader = pipeline.BatchLoader([("target", rows, self.cfg.data.batch_size)], objective_lib.TEXT_KEYS,
                                  sharding.batch_shards(self.mesh), sharding.local_batch_shards(self.mesh))
    n = 4 if self.quick else 40
    waited, t0 = 0.0, None
    for i in range(n + 2):  # two warm-up steps: the prefetch thread starts, the first batches are made
      if i == 2:
        jax.block_until_ready(self.state["step"])
        waited, t0 = 0.0, time.perf_counter()
      t = time.perf_counter()
      batch = next(loader)
      waited += time.perf_counter() - t
      self.state, m = plain_step(self.state, sharding.global_batch(batch, self.mesh), self.teacher, self.rng)
    jax.block_until_ready((self.state["step"], m["loss"]))
    loader.close()
    return waited / (time.perf_counter() - t0)

  # --- checkpoint --------------------------------------------------------------------------------------
  def checkpoint(self, plain_step, workdir: str) -> dict:
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "ckpt"), keep=2)
    n = 1 if self.quick else 2  # steps after each save in the measurement
    saves = 1
    data_state = {"target": {"epoch": 0, "index": 0, "offset": 0}}
    ckpt.save(0, self.state, data_state, force=True)  # first save sets up directories/metadata
    ckpt.wait()
    overheads = []
    for rep in range(1 if self.plumbing else 2 if self.quick else 3):
      t_plain = self.run_steps(plain_step, n * saves)
      t = time.perf_counter()
      for s in range(saves):
        ckpt.save(1 + rep * saves + s, self.state, data_state, force=True)
        self.run_steps(plain_step, n)
      ckpt.wait()  # the save must be finished for the cost to count
      t_with = (time.perf_counter() - t) / (n * saves)
      overheads.append((t_with - t_plain) * n / t_plain)  # extra time per save, in steps
    ckpt.close()
    per_save = max(0.0, median(overheads))
    interval = max(1, round(self.cfg.train.checkpoint_every_tokens / self.tokens_per_step))
    return {"checkpoint_overhead": per_save, "checkpoint_interval_steps": interval,
            "checkpoint_overhead_fraction": per_save / interval}


def kl_goal(ratio: float) -> float:
  """The KL step's time over the plain step's allowed at replay ratio r: the teacher's forward on r of the rows
  costs r/3 of a step, plus 5 %."""
  return (1 + ratio / 3) * 1.05


def goals_passed(r: dict) -> dict:
  return {
      "mfu": r["mfu"] >= r["mfu_goal"],
      "kl_cost_ratio": all(r["kl_cost_ratio"][str(x)] <= kl_goal(x) for x in KL_RATIOS),
      "sampler_vs_train": r["sampler_vs_train"] >= 2,
      "sampler_vs_recompute": r["sampler_vs_recompute"] >= 10,
      "data_vs_step": r["data_vs_step"] >= 20,
      "data_wait_fraction": r["data_wait_fraction"] <= 0.01,
      "checkpoint_overhead": r["checkpoint_overhead_fraction"] <= 0.05,
  }


def run(config: str, quick: bool = False, reps: int = 5, reference: bool = False) -> dict:
  logging.getLogger("absl").setLevel(logging.WARNING)
  overrides = dict(REFERENCE) if reference else {}
  if quick:
    overrides = {"model.num_layers": 1, "model.d_model": 32, "model.num_heads": 2, "model.max_len": 16,
                 "data.batch_size": 8, "data.vocab_size": 256}
  cfg = load_config(config, overrides)
  plumbing = not quick and plumbing_only(cfg)
  if plumbing:
    cfg.update_from_flattened_dict(PLUMBING)
    reps = 1
    print(PLUMBING_NOTE.format(params=model_lib.total_params(model_lib.ModelConfig.from_config(
        cfg.model, cfg.data.vocab_size)) / 1e6, batch=cfg.data.batch_size, length=cfg.model.max_len),
        file=sys.stderr, flush=True)
  if quick:  # tests: compiles dominate the quick run; reuse them across runs (timings are not judged there)
    jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "cpt_jax_bench_jit_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  t0 = time.perf_counter()
  bench = Bench(cfg, quick, reps, plumbing)
  sections = {}

  def timed(name, fn, *a):
    t = time.perf_counter()
    res = fn(*a)
    sections[name] = round(time.perf_counter() - t, 2)
    logging.info("bench: %s took %.1f s", name, sections[name])
    return res

  with tempfile.TemporaryDirectory() as workdir:
    out = timed("steps", bench.steps)
    plain = out.pop("_plain")
    out.update(timed("sampler", bench.sampler, plain))
    out.update(timed("data", bench.data, out["train_tokens_per_sec"], workdir, plain))
    out.update(timed("checkpoint", bench.checkpoint, plain, workdir))
  out["section_seconds"] = sections
  m = bench.model_cfg
  out["flops_per_token"] = {
      "value": bench.flops_per_token,
      "accounting": "6*(non-embedding params + V*D) + 12*L*T*D",
      "non_embedding_params": model_lib.non_embedding_params(m), "V*D": m.vocab_size * m.d_model,
      "L": m.num_layers, "T": cfg.model.max_len, "D": m.d_model}
  out["device"] = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()} " \
                  f"({os.cpu_count()} host cores)"
  out["host_memory"] = host_memory.describe()
  out["config"] = {"model": {k: getattr(m, k) for k in ("num_layers", "d_model", "num_heads", "max_len", "vocab_size",
                                                          "compute_dtype")},
                   "batch_size": cfg.data.batch_size, "teacher_dtype": cfg.replay.teacher_dtype,
                   "quick": quick, "reps": reps, "scan_layers": m.scan_layers, "remat": m.remat,
                   "attention": ops.attention_implementation(m.attention_impl, m.compute_dtype, m.head_dim)}
  out["plumbing_only"] = plumbing
  out["peak_source"] = f"table:{jax.devices()[0].device_kind}" if bench.table_peak else "measured f32 matmul"
  out["mfu_goal"] = MFU_GOAL["table" if bench.table_peak else "measured"]
  out["goals"] = GOALS
  out["passed"] = goals_passed(out)
  out["bench_seconds"] = time.perf_counter() - t0
  return out


def to_markdown(r: dict) -> str:
  kl = r["kl_cost_ratio"]
  rows = [
      ("train tokens/s", f"{r['train_tokens_per_sec']:.0f}", "", ""),
      (f"MFU (vs {r['peak_source']} peak {r['matmul_peak_flops'] / 1e9:.1f} GFLOP/s)", f"{r['mfu']:.3f}",
       f"≥ {r['mfu_goal']}", r["passed"]["mfu"]),
      *[(f"KL step / plain step, r={x}", f"{kl[x]:.3f}", f"≤ {kl_goal(float(x)):.3f}", kl[x] <= kl_goal(float(x)))
        for x in kl],
      (f"sampler (batch {r['sampler_batch']}) / train tokens/s", f"{r['sampler_vs_train']:.2f}", "≥ 2",
       r["passed"]["sampler_vs_train"]),
      *([(f"sampler at the replay batch ({r['replay_batch']}, replay.chunk_sequences) / train tokens/s",
          f"{r['sampler_vs_train_at_replay_batch']:.2f}", "", "")] if "replay_batch" in r else []),
      (f"KV cache / full recompute (context {r['recompute_context']}, batch {r['recompute_batch']})",
       f"{r['sampler_vs_recompute']:.1f}", "≥ 10", r["passed"]["sampler_vs_recompute"]),
      ("data pipeline / step tokens/s", f"{r['data_vs_step']:.1f}", "≥ 20", r["passed"]["data_vs_step"]),
      ("training thread waiting for data (share of wall time)", f"{100 * r['data_wait_fraction']:.2f} %", "≤ 1 %",
       r["passed"]["data_wait_fraction"]),
      (f"async checkpoint: step-equivalents per save (every {r['checkpoint_interval_steps']} steps)",
       f"{r['checkpoint_overhead']:.2f} ({100 * r['checkpoint_overhead_fraction']:.2f} %)", "≤ 5 %",
       r["passed"]["checkpoint_overhead"]),
      ("compile seconds (plain step)", f"{r['compile_seconds']:.1f}", "", ""),
      ("flops/token", f"{r['flops_per_token']['value']:.3g}", r["flops_per_token"]["accounting"], ""),
  ]
  lines = [f"device: {r['device']}", r["host_memory"], ""]
  if r["plumbing_only"]:
    lines += ["**plumbing only**: reduced batch and context on a CPU; these numbers measure nothing", ""]
  lines += ["| figure | measured | goal | met |", "|---|---|---|---|"]
  for name, value, goal, ok in rows:
    lines.append(f"| {name} | {value} | {goal} | {'' if ok == '' else ('yes' if ok else 'no')} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default=str(ROOT / "configs" / "pretrain_tiny.py"))
  p.add_argument("--markdown", action="store_true", help="print a table instead of JSON")
  p.add_argument("--quick", action="store_true", help="tiny model and few repetitions (tests)")
  p.add_argument("--reps", type=int, default=5)
  p.add_argument("--reference", action="store_true", help="the CPU reference shape (REFERENCE) over --config")
  args = p.parse_args(argv)
  r = run(args.config, args.quick, args.reps, args.reference)
  print(to_markdown(r) if args.markdown else json.dumps(r, indent=1))
  return 0


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()  # as the trainer runs: docs/performance.md
  sys.exit(main())
