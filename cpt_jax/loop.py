"""The training loop of one run (a pretrain or an adapt stage).

The host never waits for the device inside the loop: step t's metrics are read after step t+1 is
dispatched. Evaluation and checkpoints happen on token intervals; SIGTERM/SIGINT finish the current step,
save, and exit with code 75 so a launcher knows to relaunch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from cpt_jax import adapt as adapt_lib, build, checkpoint as ckpt_lib, config as config_lib, evaluation
from cpt_jax import metrics as metrics_lib
from cpt_jax import lease as lease_lib, model as model_lib, optim, paths, run_record, sharding, step as step_lib
from cpt_jax import compile_cache, host_memory, profiler as profiler_lib, workdir as workdir_lib
from cpt_jax.data import sources
from cpt_jax.objective import Objective

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "try again" — launch_tpu.sh relaunches on it


class TrainingDiverged(RuntimeError):
  """Loss or gradient became NaN/Inf; the message names the step and the metric."""


class Preempted(Exception):
  """SIGTERM/SIGINT arrived; a checkpoint of the last finished step was committed."""


class _StopFlag:

  def __init__(self):
    self.signal = None
    self._previous = {}

  def install(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. a notebook worker): no preemption handling
        pass

  def _handle(self, signum, frame):
    """Only sets the flag: logging here could re-enter a log write the signal interrupted (a RuntimeError)."""
    del frame
    self.signal = signum

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _evaluation_at(workdir: str, step: int) -> dict[str, Any]:
  """The eval/* metrics metrics.jsonl holds for `step` (a resumed run's final evaluation, made before it stopped)."""
  out: dict[str, Any] = {}
  for row in metrics_lib.read_metrics(workdir, missing_ok=True):
    if row.get("step") == step:
      out.update({k: v for k, v in row.items() if k.startswith("eval/")})
  return out


def run(cfg, workdir: str) -> dict[str, Any]:
  """Trains one stage to its token budget (resuming if `workdir` has checkpoints); returns the summary.

  The workdir's lease is held throughout (one run per workdir); a finished run is reported, not rewritten."""
  t_start = time.time()
  workdir_lib.check(workdir)
  config_lib.validate(cfg, jax.device_count())
  compile_cache.enable(cfg.train)  # before anything compiles: JAX opens the cache once per process
  with lease_lib.hold(workdir, cfg.train.lease_timeout_seconds) as lease:
    build.adopt_architecture(cfg)  # an adapt run's saved config holds init_from's architecture
    resume = run_record.check(cfg, workdir)  # before anything is built: a refused config changes nothing
    if resume.finished is not None:
      build.resolve_tokenizer(cfg, workdir, sources.data_dir_of(cfg.data))  # another tokenizer is refused here too
      logging.info("%s is finished (step %s, summary.json): nothing to do", workdir, resume.finished.get("steps"))
      return resume.finished
    return _train(cfg, workdir, t_start, lease, resume.changes)


def _train(cfg, workdir: str, t_start: float, lease: lease_lib.Lease, changes) -> dict[str, Any]:
  mesh = sharding.make_mesh(cfg.mesh)
  data_dir = sources.data_dir_of(cfg.data)
  tokenizer = build.resolve_tokenizer(cfg, workdir, data_dir)
  model_cfg = build.model_config(cfg, tokenizer)
  evals, entropy = build.eval_sets(cfg, tokenizer, data_dir)  # before compiling: data mistakes fail fast
  bundle, params = build.build_model(model_cfg, mesh, cfg.seed)
  tokens_per_step = build.tokens_per_step(cfg)
  total_tokens = build.token_budget(cfg, bundle.num_params)
  total_steps = max(1, math.ceil(total_tokens / tokens_per_step))
  optimizer = optim.make_optimizer(cfg.opt, tokens_per_step, total_steps)
  schedule = optim.lr_schedule(cfg.opt, tokens_per_step, total_steps)
  b1, b2 = optim.resolve_betas(cfg.opt, tokens_per_step)
  logging.info("model: %s, %d parameters (%d non-embedding); %d steps of %d tokens; β1=%.6f β2=%.6f (β2 half-life "
               "%.3g tokens)", model_cfg, bundle.num_params, model_lib.non_embedding_params(model_cfg), total_steps,
               tokens_per_step, b1, b2, optim.halflife_from_beta(tokens_per_step, b2))

  abstract_state, state_shardings = build.state_shardings(bundle, optimizer, mesh)
  state = jax.jit(lambda p: step_lib.init_state(p, optimizer), out_shardings=state_shardings)(params)
  del params
  train_src = build.train_source(cfg, data_dir)
  objective = build.resolve_objective(cfg, mesh, train_src)
  logging.info("objective: %s", objective)
  logging.info("%s", host_memory.describe())
  keep_forever = build.stage_steps(cfg, bundle.num_params) if cfg.stage == "pretrain" else ()
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), cfg.train.keep_checkpoints,
                                       keep_steps=keep_forever)
  writer = metrics_lib.MetricWriter(workdir)

  step = 0
  wall_before = 0.0  # wall time of earlier processes of this run, up to the checkpoint it resumes from
  resuming = checkpointer.latest_step() is not None
  if not resuming:  # a run killed before its first checkpoint starts over: drop the lines it wrote
    writer.truncate_after(-1)
  adaptation = None
  if cfg.stage == "adapt":
    adaptation = adapt_lib.Adaptation(cfg, workdir, objective,
                                      build.sharded_abstract(abstract_state["params"], state_shardings["params"]),
                                      resuming)
  teacher = adaptation.teacher if adaptation else None
  replay = build.replay_stream(cfg, tokenizer, data_dir, bundle, teacher) if objective.has_replay else None
  loader = build.make_loader(cfg, tokenizer, mesh, train_src, objective, replay)
  if resuming:
    step, state, data_states, saved_meta = checkpointer.restore(
        build.sharded_abstract(abstract_state, state_shardings))
    wall_before = float((saved_meta or {}).get("wall_seconds", 0.0))
    loader.set_state(_local_data_state(data_states))
    writer.truncate_after(step)
    logging.info("resumed from step %d of %s", step, workdir)
  elif adaptation:
    state = jax.jit(lambda p: step_lib.init_state(p, optimizer),
                    out_shardings=state_shardings)(adaptation.take_start_params())
  if resuming:
    run_record.record_changes(workdir, step, changes)
  build.save_run_config(cfg, workdir)  # after the restore: a config that does not fit never overwrites it
  if adaptation:
    adaptation.start_params = None
  step_teacher = teacher if objective.teacher_in_step else None

  train_step = step_lib.make_train_step(bundle.graphdef, optimizer, objective, schedule, state_shardings)
  evaluator = evaluation.Evaluator(bundle, mesh, evals, entropy, build.babi_eval_sets(cfg, data_dir), tokenizer)
  peak, peak_source = metrics_lib.peak_flops()
  step_flops = metrics_lib.flops_per_step(model_cfg, cfg.model.max_len, objective.rows,
                                          objective.replay_rows if objective.teacher_in_step else 0)
  throughput = _Throughput(tokens_per_step, step_flops, peak)
  # made on every device once (a host-made key was copied to every device at every step)
  rng = jax.jit(lambda: jax.random.key(cfg.seed + 1), out_shardings=sharding.replicated(mesh))()

  def evaluate(at_step: int) -> dict[str, float]:
    out = evaluator(state["params"])
    if adaptation:
      adaptation.annotate(out)
    writer.write(at_step, at_step * tokens_per_step, out)
    return out

  stop = _StopFlag()
  stop.install()
  ckpt_every = max(1, round(cfg.train.checkpoint_every_tokens / tokens_per_step))
  eval_every = max(1, round(cfg.train.eval_every_tokens / tokens_per_step))
  keep_steps = set(checkpointer.keep_steps)
  if step == 0:
    last_eval = evaluate(step)
  elif step >= total_steps:  # stopped after its final evaluation and checkpoint, before summary.json
    last_eval = _evaluation_at(workdir, step) or evaluate(step)
  else:
    last_eval = {}
  pending = None  # (step, device metrics) of the last dispatched step
  skips = 0
  progress = _Progress(total_steps, step, tokens_per_step, enabled=cfg.train.progress and writer.active)
  meta = {"num_params": bundle.num_params, "tokens_per_step": tokens_per_step}

  def save(at_step: int, force: bool = False):
    if at_step != checkpointer.latest_step():  # a step already saved (e.g. a checkpoint step that also stops)
      lease.check()  # another run took the workdir over: write nothing more
      checkpointer.save(at_step, state, loader.state, {**meta, "wall_seconds": wall_before + time.time() - t_start},
                        force=force)
      writer.flush()  # a gs:// metrics.jsonl is rewritten here: a resumed run finds every line up to now

  def drain(pending):
    nonlocal skips
    if pending is None:
      return
    p_step, p_metrics = pending
    m = metrics_lib.to_python(jax.device_get(p_metrics))
    if m.pop("nonfinite"):
      bad = [k for k in ("loss", "grad_norm") if not math.isfinite(m.get(k, 0.0))] or ["loss"]
      if skips >= cfg.train.max_nonfinite_skips:
        raise TrainingDiverged(
            f"non-finite {' and '.join(bad)} at step {p_step} ({m}). The step was not applied; the last "
            f"committed checkpoint in {checkpointer.directory} is intact. Lower opt.lr or raise opt.warmup_tokens "
            "(in a new --workdir), or set train.max_nonfinite_skips to skip such batches.")
      skips += 1
      logging.warning("skipped a non-finite batch at step %d (%d/%d)", p_step, skips, cfg.train.max_nonfinite_skips)
    writer.write(p_step, p_step * tokens_per_step, {f"train/{k}": v for k, v in m.items()})
    progress.update(p_step, m.get("loss", float("nan")))

  start_step = step
  profiler = profiler_lib.StepProfiler(cfg.train.profile_steps, workdir)
  try:
    while step < total_steps:
      profiler.before_step(step + 1)
      batch = sharding.global_batch(next(loader), mesh)
      state, step_metrics = train_step(state, batch, step_teacher, rng)
      step += 1
      profiler.after_step(step, (state, step_metrics))
      drain(pending)
      pending = (step, step_metrics)
      if step == start_step + 1:  # keep compilation out of the throughput windows
        throughput.restart(state)
      else:
        throughput.count()
      if step % cfg.train.log_every_steps == 0 or step == total_steps:
        drain(pending)
        pending = None
        writer.write(step, step * tokens_per_step, throughput.read(state))
      if step % eval_every == 0 or step == total_steps:
        drain(pending)
        pending = None
        throughput.pause(state)
        last_eval = evaluate(step)
        throughput.resume()
      if step % ckpt_every == 0 or step in keep_steps or step == total_steps:
        drain(pending)
        pending = None
        throughput.pause(state)
        save(step, force=step in keep_steps or step == total_steps)
        throughput.resume()
      stop_here = cfg.train.stop_at_step and step == cfg.train.stop_at_step and step < total_steps
      if (stop.signal is not None and step < total_steps) or stop_here:  # the last step: finish, it is all saved
        if stop.signal is not None:
          logging.warning("received %s: checkpointing step %d, then stopping", signal.Signals(stop.signal).name, step)
        drain(pending)
        save(step, force=True)
        checkpointer.wait()
        why = "by signal" if stop.signal is not None else "at train.stop_at_step"
        raise Preempted(f"stopped {why} at step {step}; checkpoint committed in {checkpointer.directory}")
    drain(pending)
  finally:
    profiler.close()
    stop.restore()
    loader.close()  # stops the prefetch thread
    progress.close()
    checkpointer.close()
    writer.close()

  summary = {
      "stage": cfg.stage, "steps": step, "tokens": step * tokens_per_step, "params": bundle.num_params,
      "non_embedding_params": model_lib.non_embedding_params(model_cfg),
      "ptpp": (step * tokens_per_step / bundle.num_params) if cfg.stage == "pretrain" else None,
      "atpp": (step * tokens_per_step / bundle.num_params) if cfg.stage == "adapt" else None,
      **_token_record(cfg, objective, workdir), "wall_seconds": wall_before + time.time() - t_start,
      "peak_flops": peak,
      "peak_source": peak_source, "flops_per_step": step_flops,
      "before": adaptation.before if adaptation else {}, "final": last_eval,
      "config": json.loads(cfg.to_json_best_effort()),
  }
  if writer.active:
    paths.write_text_atomic(paths.path(workdir) / "summary.json", json.dumps(summary, indent=2))
  return summary


def _token_record(cfg, objective: Objective, workdir: str) -> dict[str, Any]:
  """Tokens as trained: `scored_tokens` counts the positions the loss was computed on (the row positions of
  `tokens` less the padding of packed examples, and less the prompts under `data.answer_only`); replay's
  realized share of rows, and of scored tokens (the mixture's weight), over the run."""
  # one train line per step: a resumed run first cut metrics.jsonl back to its checkpoint (truncate_after)
  lines = metrics_lib.read_metrics(workdir) if jax.process_index() == 0 else []
  scored = [m["train/scored_tokens"] for m in lines if "train/scored_tokens" in m]
  shares = [m["train/replay_token_share"] for m in lines if "train/replay_token_share" in m]
  return {"scored_tokens": int(sum(scored)) if scored else None,
          "replay_token_share": float(np.mean(shares)) if objective.has_replay and shares else 0.0,
          "replay_semantics": objective.semantics, "replay_rows": objective.replay_rows,
          "replay_ratio": objective.replay_row_ratio, "replay_ratio_requested": cfg.replay.ratio,
          "replay_kind": cfg.replay.kind if objective.has_replay else "none",
          "replay_loss": objective.replay_loss, "replay_coeff": objective.coeff}


def _local_data_state(data_states: dict[str, Any]) -> dict[str, Any]:
  """All processes' saved data states: the loader continues their global order (pipeline.BatchLoader.set_state)."""
  if not data_states:
    raise ckpt_lib.CheckpointError("the checkpoint holds no data-iterator state; start a new --workdir")
  return data_states


class _Throughput:
  """Tokens/s and MFU over windows of training steps only: compilation, evaluation and checkpoints are left out.

  The clock stops after the device has finished the steps dispatched so far and restarts after the pause.
  """

  def __init__(self, tokens_per_step: int, flops_per_step: float, peak_flops: float):
    self._tokens, self._flops, self._peak = tokens_per_step, flops_per_step, peak_flops
    self._steps, self._elapsed, self._since = 0, 0.0, None

  def restart(self, state) -> None:
    self.pause(state)
    self._steps, self._elapsed = 0, 0.0
    self.resume()

  def count(self) -> None:
    self._steps += 1

  def pause(self, state) -> None:
    jax.block_until_ready(state["step"])
    if self._since is not None:
      self._elapsed += time.perf_counter() - self._since
      self._since = None

  def resume(self) -> None:
    self._since = time.perf_counter()

  def read(self, state) -> dict[str, float]:
    self.pause(state)
    steps_per_sec = self._steps / max(self._elapsed, 1e-9)
    self._steps, self._elapsed = 0, 0.0
    self.resume()
    return {"train/tokens_per_sec": steps_per_sec * self._tokens,
            "train/mfu": steps_per_sec * self._flops / self._peak}


class _Progress:

  def __init__(self, total: int, start: int, tokens_per_step: int, enabled: bool):
    self._bar = None
    if enabled:
      self._bar = tqdm(total=total * tokens_per_step, initial=start * tokens_per_step, unit="tok", unit_scale=True,
                       dynamic_ncols=True, mininterval=2.0, file=sys.stderr, disable=None)
    self._tps, self._last = tokens_per_step, start

  def update(self, step: int, loss: float):
    if self._bar is not None:
      self._bar.update((step - self._last) * self._tps)
      self._bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
    self._last = step

  def close(self):
    if self._bar is not None:
      self._bar.close()
