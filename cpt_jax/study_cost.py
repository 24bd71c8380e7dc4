"""What a study costs, before it runs: per cell, the tokens it trains, its training FLOPs, device-hours on a
named accelerator at an assumed MFU, and how many times it reads each corpus (epochs).

  cost = study_cost.estimate(study_grid.expand(study_cfg, root))
  print(study_cost.table(cost, "h100", 0.4))   # what `python -m cpt_jax.study ... --status` prints
  study_cost.check_repeats(cost)                # CorpusRepeated naming the cell, the corpus and its epochs

Tokens: every row of every step a run trains (target and replay rows), rounded up to whole steps as the loop
does: pretraining ptpp·N (N = build.num_params_of), adaptation build.token_budget. A reused pretraining run is
not this study's work (0 tokens). A self-replay cell (`replay/…`) generates `study.replay_tokens` tokens.

FLOPs: `metrics.flops_per_step` (MFU's numerator: 6·(non-embedding params + V·D) + 12·L·T·D per trained token)
times the steps; when the replay loss has the frozen teacher in the step (`replay.loss=kl`), its forward on every
replay row (a third of a trained token) is included, and self-generated tokens (replay cells, on-the-fly self
replay) cost one forward each. Evaluations are not counted (a few per cent at most).

Device-hours: FLOPs / (the accelerator's dense bf16 peak × MFU), summed over chips (ACCELERATORS). On "cpu" a
finished cell's hours are its measured wall seconds (summary.json) and an unfinished one's its FLOPs at the FLOP
rate the finished cells achieved (else at the measured matmul peak × CPU_MFU).

Epochs: the tokens a run draws from each corpus (the target's rows; replay's rows from data.base, or from the
self-generated samples: the replay cell's tokens) over that corpus's size in tokens as the loader packs it
(cpt_jax/corpus_size.py). A run that reads a corpus more than MAX_EPOCHS times
is flagged; `run_study` refuses to start it (`check_repeats`). bAbI-Original, a small fixed pool that the paper
repeats on purpose (Spiegelhalter et al.), is reported ("by design") but never refused.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections

from cpt_jax import build, corpus_size, metrics as metrics_lib, model as model_lib, objective as objective_lib
from cpt_jax.data import pipeline

if TYPE_CHECKING:
  from cpt_jax.study_grid import Cell

MAX_EPOCHS = 4.0
DEFAULT_MFU = 0.4  # an accelerator's assumed model FLOP utilization
# The CPU's, of its measured matmul peak, when no cell of the study has finished: the small forgetting study's
# 46k-parameter pretraining reached 7 % on 2 shared cores (9.2 GFLOP/s of 138, wall time with compile and evals).
CPU_MFU = 0.07

# name → (label, dense bf16 peak FLOP/s per chip, vendor data sheets); cpu: measured instead
ACCELERATORS = {
    "h100": ("H100 SXM", 989e12), "h200": ("H200", 989e12), "a100": ("A100", 312e12),
    "tpu-v4": ("TPU v4", 275e12), "tpu-v5e": ("TPU v5e", 197e12), "tpu-v5p": ("TPU v5p", 459e12),
    "cpu": ("CPU", None),
}

class CorpusRepeated(ValueError):
  """A run of the study reads a corpus more than MAX_EPOCHS times; the message names the cell and corpus."""


@dataclasses.dataclass
class CellCost:
  cell: Cell
  tokens: int  # trained (pretrain, adapt) or generated (replay) tokens
  flops: float
  steps: int = 0
  draws: dict[str, float] = dataclasses.field(default_factory=dict)  # corpus key → tokens read
  wall_seconds: float | None = None  # measured, finished cells only
  note: str = ""


@dataclasses.dataclass
class StudyCost:
  cells: list[CellCost]
  corpora: dict[str, corpus_size.Corpus]

  def epochs(self, c: CellCost) -> dict[str, float | None]:
    return {k: (n / self.corpora[k].tokens if self.corpora[k].tokens else None) for k, n in c.draws.items()}

  @property
  def flops(self) -> float:
    return sum(c.flops for c in self.cells)

  @property
  def tokens(self) -> int:
    return sum(c.tokens for c in self.cells if c.cell.kind != "replay")


def accelerator(name: str) -> tuple[str, str, float | None]:
  """(key, label, peak FLOP/s per chip) of an ACCELERATORS name, forgiving spelling: H100, h100-sxm, "TPU v5e",
  tpu_v5p, v4."""
  norm = name.lower().replace("nvidia", "").replace("sxm", "")
  norm = "".join(ch for ch in norm if ch.isalnum())
  aliases = {k.replace("-", ""): k for k in ACCELERATORS} | {k[4:]: k for k in ACCELERATORS if k.startswith("tpu-")}
  if norm not in aliases:
    raise ValueError(f"--accelerator={name!r}: one of {', '.join(ACCELERATORS)}")
  key = aliases[norm]
  return (key, *ACCELERATORS[key])


def default_accelerator(study: ml_collections.ConfigDict) -> str:
  """cpu for a float32 study (the small, CPU variants), h100 for a bfloat16 one (the full variants)."""
  return "cpu" if study.pretrain.model.compute_dtype == "float32" else "h100"


def _cfg(d: dict[str, Any]) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(d)


def _model(cfg) -> model_lib.ModelConfig:
  return model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size)


def _steps(cfg) -> int:
  return max(1, math.ceil(build.token_budget(cfg, build.num_params_of(cfg)) / build.tokens_per_step(cfg)))


def replay_rows(cfg) -> int:
  """Replay rows per step of a run (one batch shard; the objective's rounding)."""
  ratio = float(cfg.replay.ratio)
  if not ratio:
    return 0
  try:
    return objective_lib.replay_rows_for(cfg.data.batch_size, ratio, 1)
  except objective_lib.ObjectiveError:
    return round(cfg.data.batch_size * ratio)


def copy_rows(cfg) -> int:
  share = cfg.data.get("copy_share", 0.0)
  return objective_lib.replay_rows_for(cfg.data.batch_size, share, 1, "data.copy_share") if share else 0


def teacher_in_step(cfg) -> bool:
  loss = objective_lib.REPLAY_LOSSES.get(cfg.replay.loss)
  return replay_rows(cfg) > 0 and loss is not None and loss.needs_teacher


def _wall_seconds(cell: Cell) -> float | None:
  if cell.kind == "replay" or not cell.done:
    return None
  s = corpus_size.read_json(cell.workdir / "summary.json")
  return float(s["wall_seconds"]) if s and s.get("wall_seconds") is not None else None


def estimate(cells: list[Cell]) -> StudyCost:
  """The cost of every cell of an expanded study (`study_grid.expand`)."""
  sizer = corpus_size.Sizer()
  by_id = {c.id: c for c in cells}
  out = []
  for cell in cells:
    if cell.reused:
      out.append(CellCost(cell, 0, 0.0, note="reused: not this study's work"))
      continue
    if cell.kind == "replay":
      out.append(_replay_cost(cell, by_id))
      continue
    cfg = _cfg(cell.config)
    model, T, B = _model(cfg), cfg.model.max_len, cfg.data.batch_size
    steps = _steps(cfg)
    cost = CellCost(cell, steps * B * T, 0.0, steps, wall_seconds=_wall_seconds(cell))
    if cfg.stage == "pretrain":
      cost.flops = steps * metrics_lib.flops_per_step(model, T, B)
      cost.draws[sizer.size(cfg.data.base, cfg, cell.workdir)] = steps * (B - copy_rows(cfg)) * T
    else:
      r, c = replay_rows(cfg), copy_rows(cfg)
      teacher = teacher_in_step(cfg)
      cost.flops = steps * metrics_lib.flops_per_step(model, T, B, r if teacher else 0)
      cost.draws[sizer.size(cfg.data.target, cfg, cell.workdir)] = steps * (B - r - c) * T
      kind = cfg.replay.kind
      if r and kind == "real":
        key = sizer.size(cfg.data.base, cfg, cell.workdir)
        cost.draws[key] = cost.draws.get(key, 0) + steps * r * T
      elif r and kind == "self" and cfg.replay.samples:
        key = _self_corpus(cell, cfg, by_id, sizer)
        cost.draws[key] = steps * r * T
      elif r and kind == "self":  # sampled on the fly: one forward per generated token, never reused
        cost.flops += steps * r * T * model_lib.flops_per_token(model, T) / 3
      cost.note = "teacher forward counted" if teacher else ""
    if copy_rows(cfg):  # each copy row takes its spans from SPAN_SOURCES rows of base text
      key = sizer.size(cfg.data.base, cfg, cell.workdir)
      cost.draws[key] = cost.draws.get(key, 0) + steps * copy_rows(cfg) * pipeline.SPAN_SOURCES * T
    out.append(cost)
  return StudyCost(out, sizer.corpora)


def _replay_cost(cell: Cell, by_id: dict[str, Cell]) -> CellCost:
  """Sampling `tokens` tokens from the stage's checkpoint: one forward per token (KV cache, full context)."""
  pre = by_id.get(cell.needs[0]) if cell.needs else None
  run = pre.config if pre is not None and pre.config else corpus_size.read_json(
      Path(cell.config["workdir"]) / "config.json")
  tokens = int(cell.config["tokens"])
  if not run:
    return CellCost(cell, tokens, 0.0, note="model unknown")
  cfg = _cfg(run)
  model = _model(cfg)
  rows = -(-tokens // cfg.model.max_len)
  return CellCost(cell, rows * cfg.model.max_len,
                  rows * cfg.model.max_len * model_lib.flops_per_token(model, cfg.model.max_len) / 3,
                  note="sampling")


def _self_corpus(cell: Cell, cfg, by_id: dict[str, Cell], sizer: corpus_size.Sizer) -> str:
  """The key of the self-generated samples an adapt cell reads: the size its replay cell writes."""
  label = f"self-replay({Path(cfg.replay.samples).parent.parent.name})"
  key = f"{label}|{cfg.replay.samples}"
  if key not in sizer.corpora:
    made_by = [by_id[n] for n in cell.needs if n.startswith("replay/") and n in by_id]
    if made_by:
      rows = -(-int(made_by[0].config["tokens"]) // cfg.model.max_len)
      sizer.corpora[key] = corpus_size.Corpus(label, rows * cfg.model.max_len,
                                              "the replay cell's tokens (study.replay_tokens)")
    else:
      info = corpus_size.read_json(Path(cfg.replay.samples) / "dataset_info.json")
      n = (info or {}).get("splits", {}).get("train", {}).get("num_examples")
      sizer.corpora[key] = (corpus_size.Corpus(label, n * cfg.model.max_len, "its dataset_info.json") if n else
                            corpus_size.Corpus(label, None, "unknown: the samples dataset is not there yet"))
  return key


def _repeats(cost: StudyCost, max_epochs: float) -> list[tuple[str, str, float]]:
  return [(c.cell.id, key, e) for c in cost.cells for key, e in cost.epochs(c).items()
          if e is not None and e > max_epochs and not cost.corpora[key].by_design]


def repeats(cost: StudyCost, max_epochs: float = MAX_EPOCHS) -> list[tuple[str, str, float]]:
  """(cell, corpus, epochs) of every run that reads a corpus more than `max_epochs` times (not by design)."""
  return [(cell, cost.corpora[key].label, e) for cell, key, e in _repeats(cost, max_epochs)]


def to_json(cost: StudyCost, root: Path) -> dict[str, Any]:
  """Every cell's tokens, FLOPs, corpus epochs and the file that marks it finished (relative to the study
  directory `root`), and each corpus's size: the runner writes it as DIR/cost.json, from which the reports
  state the epochs each stage consumed and the hours still to run."""
  def done_file(cell: Cell) -> str | None:
    if cell.reused:  # not this study's work
      return None
    return str(cell.done_file.relative_to(root) if cell.done_file.is_relative_to(root) else cell.done_file)

  return {
      "corpora": {k: {"label": c.label, "tokens": c.tokens, "how": c.how, "by_design": c.by_design,
                      "estimated": c.estimated} for k, c in cost.corpora.items()},
      "cells": [{"cell": c.cell.id, "kind": c.cell.kind, "tokens": c.tokens, "flops": c.flops,
                 "done_file": done_file(c.cell),
                 "epochs": {cost.corpora[k].label: e for k, e in cost.epochs(c).items()}} for c in cost.cells],
  }


def check_repeats(cost: StudyCost, max_epochs: float = MAX_EPOCHS) -> None:
  """Raises CorpusRepeated when a run would read a corpus more than `max_epochs` times."""
  found = _repeats(cost, max_epochs)
  if not found:
    return
  cell, key, e = max(found, key=lambda x: x[2])
  size = cost.corpora[key]
  cells = sorted({f[0] for f in found})
  more = f" ({len(cells)} runs in all: {', '.join(cells[:4])}{', …' if len(cells) > 4 else ''})"
  raise CorpusRepeated(
      f"{cell} would read the corpus {size.label} {e:.1f} times (more than {max_epochs:g} epochs; its size: "
      f"{_num(size.tokens)} tokens, {size.how}){more if len(cells) > 1 else ''}. Give the study a larger corpus (or "
      "state its true size in the source's size_tokens), or fewer tokens; `--status` lists every cell's epochs")


def device_hours(cost: StudyCost, accelerator_name: str = "h100", mfu: float | None = None
                 ) -> tuple[list[float | None], str]:
  """Hours per cell (chip-hours summed over devices) and a sentence saying how they were obtained. `mfu` None:
  DEFAULT_MFU on an accelerator, CPU_MFU on the CPU."""
  key, label, peak = accelerator(accelerator_name)
  mfu = mfu or (CPU_MFU if key == "cpu" else DEFAULT_MFU)
  if not 0 < mfu <= 1:
    raise ValueError(f"--mfu={mfu}: must be in (0, 1]")
  if peak is not None:
    return ([c.flops / (peak * mfu) / 3600 for c in cost.cells],
            f"{label} ({peak / 1e12:g} TFLOP/s bf16 peak) at MFU {mfu:g}")
  measured = [c for c in cost.cells if c.wall_seconds and c.flops]
  if measured:
    rate = sum(c.flops for c in measured) / sum(c.wall_seconds for c in measured)
    how = (f"CPU: measured wall time of the {len(measured)} finished cells; the others at the "
           f"{rate / 1e9:.3g} GFLOP/s those achieved")
  else:
    rate = metrics_lib.measure_matmul_peak() * mfu
    how = f"CPU: no cell finished yet; at the measured matmul peak × an MFU of {mfu:g} = {rate / 1e9:.3g} GFLOP/s"
  return [c.wall_seconds / 3600 if c.wall_seconds else c.flops / rate / 3600 for c in cost.cells], how


def _num(x: float | None) -> str:
  if x is None:
    return "?"
  for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
    if abs(x) >= scale:
      return f"{x / scale:.3g}{unit}"
  return f"{x:.3g}"


def table(cost: StudyCost, accelerator_name: str = "h100", mfu: float | None = None,
          max_epochs: float = MAX_EPOCHS) -> str:
  """Per cell: tokens, FLOPs, device-hours, epochs of each corpus; totals; the corpora's sizes; flagged repeats."""
  hours, how = device_hours(cost, accelerator_name, mfu)
  unit = accelerator(accelerator_name)[0] + "-h"
  width = max([len(c.cell.id) for c in cost.cells] + [4])
  lines = [f"cost: {how}", f"  {'cell':<{width}} {'tokens':>8} {'FLOPs':>9} {unit:>10}  epochs (corpus: times read)"]
  for c, h in zip(cost.cells, hours):
    parts = []
    for key, e in cost.epochs(c).items():
      corpus = cost.corpora[key]
      mark = ("" if e is None or e <= max_epochs else " (by design)" if corpus.by_design else
              f" > {max_epochs:g}: REFUSED")
      parts.append(f"{corpus.label} {'?' if e is None else f'{e:.3g}'}{mark}")
    if c.note and not parts:
      parts.append(f"({c.note})")
    lines.append(f"  {c.cell.id:<{width}} {_num(c.tokens):>8} {c.flops:>9.3g} {h or 0:>10.3g}  {', '.join(parts)}")
  lines.append(f"  {'total':<{width}} {_num(cost.tokens):>8} {cost.flops:>9.3g} {sum(h or 0 for h in hours):>10.4g}"
               "  (tokens: trained; FLOPs and hours include sampling)")
  lines.append("corpora (size in tokens as the loader packs them):")
  for corpus in cost.corpora.values():
    flag = " [estimated]" if corpus.estimated else ""
    lines.append(f"  {corpus.label}: {_num(corpus.tokens)}{flag} — {corpus.how}")
  found = repeats(cost, max_epochs)
  if found:
    worst = max(found, key=lambda f: f[2])
    lines.append(f"REPEATS: {len(found)} run{'s read' if len(found) > 1 else ' reads'} a corpus more than "
                 f"{max_epochs:g} times; the runner refuses to start the study (most: {worst[0]} reads {worst[1]} "
                 f"{worst[2]:.1f} times)")
  else:
    lines.append(f"repeats: no run reads a corpus more than {max_epochs:g} times")
  return "\n".join(lines)
